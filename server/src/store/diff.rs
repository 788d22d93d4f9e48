//! What changed between two configurations, as a list of paths with before/after
//! values, for the audit log and the publish response.
//!
//! Paths follow the config validator's convention, so the console can show a change
//! next to the field it concerns:
//! - object fields are joined with dots: `features.summarize.deadline_ms`;
//! - an array whose elements are all objects with distinct string `name` fields (on
//!   both sides) is keyed by name: `features.summarize.experiment.variants.b.percent`,
//!   so reordering such a list is not a change and an edit of one element names it;
//! - any other array is keyed by index: `features.summarize.binding[0]`.
//!
//! A value present on one side only is one change with the whole value (`before` or
//! `after` is `None`); values of different kinds (an object replaced by a string) are
//! one change of the whole value. Changes come in document order (new order for
//! named lists, removals after the surviving entries).

use serde_json::{Map, Value};

use router_core::admin::Change;

/// The changes that turn `old` into `new`.
pub fn changes(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    diff(String::new(), Some(old), Some(new), &mut out);
    out
}

fn diff(path: String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => diff_objects(&path, a, b, out),
        (Some(Value::Array(a)), Some(Value::Array(b))) => match (named(a), named(b)) {
            (Some(a), Some(b)) => diff_named(&path, &a, &b, out),
            _ => diff_indexed(&path, a, b, out),
        },
        (Some(a), Some(b)) if a == b => {}
        (None, None) => {}
        (old, new) => out.push(Change {
            path,
            before: old.cloned(),
            after: new.cloned(),
        }),
    }
}

fn diff_objects(path: &str, a: &Map<String, Value>, b: &Map<String, Value>, out: &mut Vec<Change>) {
    for (key, new) in b {
        diff(join(path, key), a.get(key), Some(new), out);
    }
    for (key, old) in a {
        if !b.contains_key(key) {
            diff(join(path, key), Some(old), None, out);
        }
    }
}

fn diff_named(path: &str, a: &[(&str, &Value)], b: &[(&str, &Value)], out: &mut Vec<Change>) {
    for (name, new) in b {
        diff(join(path, name), find(a, name), Some(new), out);
    }
    for (name, old) in a {
        if find(b, name).is_none() {
            diff(join(path, name), Some(old), None, out);
        }
    }
}

fn diff_indexed(path: &str, a: &[Value], b: &[Value], out: &mut Vec<Change>) {
    for i in 0..a.len().max(b.len()) {
        diff(format!("{path}[{i}]"), a.get(i), b.get(i), out);
    }
}

/// The elements of a list of distinctly named objects, with their names; `None` for
/// any other list. An empty list counts as named, so adding the first element of a
/// named list is keyed by its name.
fn named(list: &[Value]) -> Option<Vec<(&str, &Value)>> {
    let mut out: Vec<(&str, &Value)> = Vec::with_capacity(list.len());
    for v in list {
        let name = v.as_object()?.get("name")?.as_str()?;
        if out.iter().any(|(n, _)| *n == name) {
            return None;
        }
        out.push((name, v));
    }
    Some(out)
}

fn find<'a>(list: &[(&str, &'a Value)], name: &str) -> Option<&'a Value> {
    list.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(old: Value, new: Value) -> Vec<String> {
        changes(&old, &new).into_iter().map(|c| c.path).collect()
    }

    #[test]
    fn named_lists_are_keyed_by_name_and_others_by_index() {
        let old = json!({"features": [
            {"name": "summarize", "binding": ["a", "b"],
             "experiment": {"id": "x", "variants": [
                {"name": "a", "percent": 50.0}, {"name": "b", "percent": 50.0}]}}]});
        let new = json!({"features": [
            {"name": "summarize", "binding": ["a", "c"],
             "experiment": {"id": "x", "variants": [
                {"name": "b", "percent": 30.0}, {"name": "a", "percent": 70.0}]}}]});
        let c = changes(&old, &new);
        let got: Vec<_> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "features.summarize.binding[1]",
                "features.summarize.experiment.variants.b.percent",
                "features.summarize.experiment.variants.a.percent",
            ]
        );
        assert_eq!(c[1].before, Some(json!(50.0)));
        assert_eq!(c[1].after, Some(json!(30.0)));
    }

    #[test]
    fn additions_and_removals_carry_the_whole_value() {
        let c = changes(
            &json!({"endpoints": [{"name": "x", "region": "r"}], "teams": []}),
            &json!({"endpoints": [{"name": "y", "region": "r"}], "retry": {"max": 2}, "teams": []}),
        );
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0].path, "endpoints.y");
        assert_eq!(
            (c[0].before.clone(), c[0].after.clone()),
            (None, Some(json!({"name": "y", "region": "r"})))
        );
        assert_eq!(c[1].path, "endpoints.x");
        assert_eq!(c[1].after, None);
        assert_eq!(c[2].path, "retry");
        assert!(paths(json!({"a": [1, 2]}), json!({"a": [1, 2]})).is_empty());
        assert_eq!(paths(json!({"a": {"b": 1}}), json!({"a": "s"})), ["a"]);
        assert_eq!(paths(json!({"a": [1]}), json!({"a": [1, 5]})), ["a[1]"]);
    }
}
