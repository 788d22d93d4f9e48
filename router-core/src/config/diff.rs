//! What changed between two configurations: the one diff Crossbar has. The console
//! shows it before a publish, the server returns it from the publish and writes it to
//! the audit log, so what a person reviews is what the audit log records.
//!
//! A change is a path with its value before and after ([`Change`]). Paths follow the
//! validator's convention, so a change and a problem about the same field read alike
//! (`features.recap.experiment.variants.b.percent`). The algorithm, for two JSON
//! values:
//!
//! - **objects** are compared field by field (`features.summarize.deadline_ms`);
//! - **lists of objects that each have a distinct, non-empty string `name`** (on both
//!   sides: endpoints, features, teams, variants) are keyed by that name
//!   (`features.summarize`), so reordering them is no change and an edit of one
//!   element names it; an empty list counts as such a list, so the first element
//!   added is named too;
//! - **lists of plain values** (strings, numbers, booleans, nulls: a binding) are
//!   compared whole: reordering a binding reads as one change `["a","b"] → ["b","a"]`,
//!   which is what a person did, rather than two changed indexes;
//! - **any other list** is compared by index (`geographies[1]`);
//! - a value present on one side only is one change carrying the whole value (the
//!   other side is `None`); values of different kinds (an object replaced by a
//!   string) are one change of the whole value.
//!
//! Order: object fields in the order of their names (the same in every build,
//! whatever `serde_json`'s map type), named elements in the order of the new list
//! with removed ones after it, indexed elements by index.
//!
//! Pure `serde_json`: this module compiles to wasm with the rest of `config`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::RouterConfig;

/// One changed value between two configurations, by path.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    /// `None`: the value was added.
    pub before: Option<Value>,
    /// `None`: the value was removed.
    pub after: Option<Value>,
}

/// The changes that turn `before` into `after`.
pub fn changes(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(String::new(), Some(before), Some(after), &mut out);
    out
}

/// What replacing configuration `before` by `after` changes: [`changes`] of their
/// JSON forms (`serde_json::to_value`), the form the admin API carries.
pub fn config_changes(
    before: &RouterConfig,
    after: &RouterConfig,
) -> Result<Vec<Change>, serde_json::Error> {
    Ok(changes(
        &serde_json::to_value(before)?,
        &serde_json::to_value(after)?,
    ))
}

fn walk(path: String, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Change>) {
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => walk_objects(&path, a, b, out),
        (Some(Value::Array(a)), Some(Value::Array(b))) if a != b => {
            if let (Some(a), Some(b)) = (named(a), named(b)) {
                walk_named(&path, &a, &b, out);
            } else if a.iter().chain(b).all(is_plain) {
                push(path, before, after, out);
            } else {
                for i in 0..a.len().max(b.len()) {
                    walk(format!("{path}[{i}]"), a.get(i), b.get(i), out);
                }
            }
        }
        (a, b) if a != b => push(path, a, b, out),
        _ => {}
    }
}

fn walk_objects(path: &str, a: &Map<String, Value>, b: &Map<String, Value>, out: &mut Vec<Change>) {
    let mut keys: Vec<&String> = a
        .keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .collect();
    keys.sort();
    for key in keys {
        walk(join(path, key), a.get(key), b.get(key), out);
    }
}

fn walk_named(path: &str, a: &[(&str, &Value)], b: &[(&str, &Value)], out: &mut Vec<Change>) {
    for (name, after) in b {
        walk(join(path, name), find(a, name), Some(after), out);
    }
    for (name, before) in a {
        if find(b, name).is_none() {
            walk(join(path, name), Some(before), None, out);
        }
    }
}

/// The elements of a list of objects with distinct, non-empty string names, with
/// their names; `None` for any other list.
fn named(list: &[Value]) -> Option<Vec<(&str, &Value)>> {
    let mut out: Vec<(&str, &Value)> = Vec::with_capacity(list.len());
    for v in list {
        let name = v.get("name")?.as_str().filter(|n| !n.is_empty())?;
        if !v.is_object() || find(&out, name).is_some() {
            return None;
        }
        out.push((name, v));
    }
    Some(out)
}

fn is_plain(v: &Value) -> bool {
    !v.is_object() && !v.is_array()
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

fn push(path: String, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Change>) {
    out.push(Change {
        path,
        before: before.cloned(),
        after: after.cloned(),
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{ExperimentConfig, FeatureConfig, VariantConfig};

    fn paths(before: Value, after: Value) -> Vec<String> {
        changes(&before, &after)
            .into_iter()
            .map(|c| c.path)
            .collect()
    }

    #[test]
    fn equal_values_have_no_changes() {
        let v = json!({"features": [{"name": "recap", "binding": ["a", "b"]}]});
        assert!(changes(&v, &v.clone()).is_empty());
        assert!(paths(json!({"a": [1, 2]}), json!({"a": [1, 2]})).is_empty());
    }

    #[test]
    fn named_lists_are_keyed_by_name_like_validation_paths() {
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
        let c = changes(&before, &after);
        let got: Vec<&str> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "features.recap.experiment.variants.a.percent",
                "features.recap.experiment.variants.b.percent"
            ]
        );
        assert_eq!(c[0].before, Some(json!(50.0)));
        assert_eq!(c[0].after, Some(json!(70.0)));
    }

    #[test]
    fn reordering_a_named_list_is_no_change_and_an_edit_follows_the_new_order() {
        let before = json!({"variants": [
            {"name": "a", "percent": 50.0}, {"name": "b", "percent": 50.0}]});
        let reordered = json!({"variants": [
            {"name": "b", "percent": 50.0}, {"name": "a", "percent": 50.0}]});
        assert!(changes(&before, &reordered).is_empty());
        let edited = json!({"variants": [
            {"name": "b", "percent": 30.0}, {"name": "a", "percent": 70.0}]});
        assert_eq!(
            paths(before, edited),
            ["variants.b.percent", "variants.a.percent"]
        );
    }

    #[test]
    fn a_reordered_binding_is_one_change_of_the_whole_list() {
        let c = changes(
            &json!({"binding": ["a", "b", "c"]}),
            &json!({"binding": ["b", "a", "c"]}),
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].path, "binding");
        assert_eq!(c[0].before, Some(json!(["a", "b", "c"])));
        assert_eq!(c[0].after, Some(json!(["b", "a", "c"])));
        // A longer list of plain values is one change too, not one per index.
        assert_eq!(paths(json!({"a": [1]}), json!({"a": [1, 5]})), ["a"]);
        assert_eq!(paths(json!({"a": []}), json!({"a": ["x"]})), ["a"]);
    }

    #[test]
    fn additions_and_removals_carry_the_whole_value() {
        let c = changes(
            &json!({"endpoints": [{"name": "x", "region": "r"}], "owner": "growth", "teams": []}),
            &json!({"endpoints": [{"name": "y", "region": "r"}], "retry": {"max": 2}, "teams": []}),
        );
        let got: Vec<&str> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(got, ["endpoints.y", "endpoints.x", "owner", "retry"]);
        assert_eq!(
            (c[0].before.clone(), c[0].after.clone()),
            (None, Some(json!({"name": "y", "region": "r"})))
        );
        assert_eq!(
            (c[1].before.clone(), c[1].after.clone()),
            (Some(json!({"name": "x", "region": "r"})), None)
        );
        assert_eq!(c[2].after, None);
        assert_eq!(c[3].before, None);
    }

    #[test]
    fn the_first_element_of_an_empty_named_list_is_keyed_by_its_name() {
        assert_eq!(
            paths(json!({"teams": []}), json!({"teams": [{"name": "search"}]})),
            ["teams.search"]
        );
    }

    #[test]
    fn lists_of_unnamed_or_duplicate_named_objects_are_compared_by_index() {
        assert_eq!(
            paths(
                json!({"geos": [{"x": 1}, {"x": 2}]}),
                json!({"geos": [{"x": 1}, {"x": 3}, {"x": 4}]})
            ),
            ["geos[1].x", "geos[2]"]
        );
        assert_eq!(
            paths(
                json!({"l": [{"name": "a", "v": 1}, {"name": "a", "v": 2}]}),
                json!({"l": [{"name": "a", "v": 1}, {"name": "a", "v": 3}]})
            ),
            ["l[1].v"]
        );
        assert_eq!(
            paths(
                json!({"l": [{"name": ""}]}),
                json!({"l": [{"name": "", "v": 1}]})
            ),
            ["l[0].v"]
        );
    }

    #[test]
    fn values_of_different_kinds_are_one_change_of_the_whole_value() {
        assert_eq!(paths(json!({"a": {"b": 1}}), json!({"a": "s"})), ["a"]);
        let c = changes(&json!({"a": 1}), &json!({"a": "1"}));
        assert_eq!(
            (c[0].path.as_str(), c[0].after.clone()),
            ("a", Some(json!("1")))
        );
    }

    #[test]
    fn a_configuration_diff_names_the_feature_and_variant_edited() {
        let mut recap = FeatureConfig::new("recap", &["br"]);
        recap.experiment = Some(ExperimentConfig {
            id: "recap-1".into(),
            variants: vec![
                VariantConfig {
                    name: "a".into(),
                    percent: 50.0,
                    binding: vec!["br".into()],
                },
                VariantConfig {
                    name: "b".into(),
                    percent: 50.0,
                    binding: vec!["gem".into()],
                },
            ],
        });
        let before = RouterConfig {
            features: vec![recap],
            ..RouterConfig::default()
        };
        let mut after = before.clone();
        let edited = after.feature_mut("recap").unwrap();
        edited.binding = vec!["gem".into(), "br".into()];
        edited.experiment.as_mut().unwrap().variants[1].percent = 60.0;
        edited.experiment.as_mut().unwrap().variants[0].percent = 40.0;
        let c = config_changes(&before, &after).unwrap();
        let got: Vec<&str> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "features.recap.binding",
                "features.recap.experiment.variants.a.percent",
                "features.recap.experiment.variants.b.percent",
            ]
        );
        assert!(config_changes(&before, &before).unwrap().is_empty());
    }
}
