//! What an edit changes: the difference of two JSON values as a list of paths with
//! their values before and after ([`Change`], the shape the server reports too).
//!
//! Paths follow the validator's convention so that a change and a problem about the
//! same field read alike (`features.recap.experiment.variants.b.percent`):
//! - arrays whose elements are all objects with a string `name` are keyed by name
//!   (endpoints, features, variants, teams);
//! - arrays of plain values (a binding) are compared whole: a reorder reads as
//!   `["a","b"] → ["b","a"]`, which is what a person did;
//! - other arrays are compared by index (`[2]`).

use router_core::admin::Change;
use serde_json::Value;

/// Every difference between `before` and `after`, under `prefix` (may be empty).
pub fn diff(before: &Value, after: &Value, prefix: &str) -> Vec<Change> {
    let mut out = Vec::new();
    walk(Some(before), Some(after), prefix, &mut out);
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk(before: Option<&Value>, after: Option<&Value>, path: &str, out: &mut Vec<Change>) {
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (k, va) in a {
                walk(Some(va), b.get(k), &join(path, k), out);
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    walk(None, Some(vb), &join(path, k), out);
                }
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a != b => {
            if let (Some(na), Some(nb)) = (names(a), names(b)) {
                for (name, va) in na.iter().zip(a) {
                    let vb = nb.iter().position(|n| n == name).map(|i| &b[i]);
                    walk(Some(va), vb, &join(path, name), out);
                }
                for (name, vb) in nb.iter().zip(b) {
                    if !na.contains(name) {
                        walk(None, Some(vb), &join(path, name), out);
                    }
                }
            } else if a.iter().chain(b).all(|v| !v.is_object() && !v.is_array()) {
                push(out, path, before, after);
            } else {
                for i in 0..a.len().max(b.len()) {
                    walk(a.get(i), b.get(i), &format!("{path}[{i}]"), out);
                }
            }
        }
        (a, b) if a != b => push(out, path, a, b),
        _ => {}
    }
}

fn push(out: &mut Vec<Change>, path: &str, before: Option<&Value>, after: Option<&Value>) {
    out.push(Change {
        path: path.to_owned(),
        before: before.cloned(),
        after: after.cloned(),
    });
}

/// The `name` of every element, if every element is an object with a unique,
/// non-empty string name.
fn names(items: &[Value]) -> Option<Vec<String>> {
    let names: Vec<String> = items
        .iter()
        .map(|v| {
            v.get("name")?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .collect::<Option<_>>()?;
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    (sorted.len() == names.len()).then_some(names)
}

/// What replacing configuration `before` by `after` changes.
pub fn config_changes(
    before: &router_core::config::RouterConfig,
    after: &router_core::config::RouterConfig,
) -> Vec<Change> {
    match (serde_json::to_value(before), serde_json::to_value(after)) {
        (Ok(a), Ok(b)) => diff(&a, &b, ""),
        _ => Vec::new(),
    }
}

/// A value as shown in a diff: compact JSON; absent as `∅`.
pub fn show(value: Option<&Value>) -> String {
    match value {
        None => "∅".to_owned(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(changes: &[Change]) -> Vec<&str> {
        changes.iter().map(|c| c.path.as_str()).collect()
    }

    #[test]
    fn equal_values_have_no_changes() {
        let v = json!({"features": [{"name": "recap", "binding": ["a", "b"]}]});
        assert!(diff(&v, &v.clone(), "").is_empty());
    }

    #[test]
    fn named_arrays_are_keyed_by_name_like_validation_paths() {
        let before = json!({"features": [
            {"name": "summarize", "binding": ["a"]},
            {"name": "recap", "experiment": {"id": "e1", "variants": [
                {"name": "a", "percent": 50.0, "binding": ["x"]},
                {"name": "b", "percent": 50.0, "binding": ["y"]}
            ]}}
        ]});
        let mut after = before.clone();
        after["features"][1]["experiment"]["variants"][0]["percent"] = json!(70.0);
        after["features"][1]["experiment"]["variants"][1]["percent"] = json!(30.0);
        let changes = diff(&before, &after, "");
        assert_eq!(
            paths(&changes),
            [
                "features.recap.experiment.variants.a.percent",
                "features.recap.experiment.variants.b.percent"
            ]
        );
        assert_eq!(changes[0].before, Some(json!(50.0)));
        assert_eq!(changes[0].after, Some(json!(70.0)));
    }

    #[test]
    fn a_reordered_binding_is_one_change_of_the_whole_list() {
        let before = json!({"binding": ["a", "b", "c"]});
        let after = json!({"binding": ["b", "a", "c"]});
        let changes = diff(&before, &after, "features.recap");
        assert_eq!(paths(&changes), ["features.recap.binding"]);
        assert_eq!(show(changes[0].before.as_ref()), r#"["a","b","c"]"#);
        assert_eq!(show(changes[0].after.as_ref()), r#"["b","a","c"]"#);
    }

    #[test]
    fn added_and_removed_keys_and_elements_have_an_absent_side() {
        let before = json!({"owner": "growth", "variants": [{"name": "a"}, {"name": "b"}]});
        let after = json!({"experiment": {"id": "x"}, "variants": [{"name": "a"}, {"name": "c"}]});
        let changes = diff(&before, &after, "");
        assert_eq!(
            paths(&changes),
            ["owner", "variants.b", "variants.c", "experiment"]
        );
        assert_eq!(changes[0].after, None);
        assert_eq!(changes[1].after, None);
        assert_eq!(changes[2].before, None);
        assert_eq!(show(changes[3].before.as_ref()), "∅");
    }

    #[test]
    fn arrays_of_unnamed_objects_are_compared_by_index() {
        let before = json!({"geos": [{"x": 1}, {"x": 2}]});
        let after = json!({"geos": [{"x": 1}, {"x": 3}, {"x": 4}]});
        let changes = diff(&before, &after, "");
        assert_eq!(paths(&changes), ["geos[1].x", "geos[2]"]);
    }

    #[test]
    fn scalar_type_changes_are_reported() {
        let changes = diff(&json!({"a": 1}), &json!({"a": "1"}), "");
        assert_eq!(paths(&changes), ["a"]);
        assert_eq!(show(changes[0].after.as_ref()), "\"1\"");
    }
}
