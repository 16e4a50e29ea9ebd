//! The lossless msgpack ⇄ JSON mapping, value by value.

use plugtap::value_json::{from_json, raw_string, same_value, to_json};
use rmpv::Value as Mp;
use serde_json::Value as Js;
use serde_json::json;

fn check(v: Mp, expected: Js) {
    let j = to_json(&v);
    assert_eq!(j, expected, "to_json of {v:?}");
    let text = serde_json::to_string(&j).unwrap();
    let back: Js = serde_json::from_str(&text).unwrap();
    let mp = from_json(&back).unwrap();
    assert!(same_value(&mp, &v), "{v:?} came back as {mp:?} via {text}");
}

#[test]
fn table() {
    check(Mp::Nil, json!(null));
    check(Mp::from(7), json!(7));
    check(Mp::from(-3), json!(-3));
    check(Mp::from(u64::MAX), json!(u64::MAX));
    check(Mp::from(i64::MIN), json!(i64::MIN));
    check(Mp::F64(1.0), json!(1.0));
    check(Mp::F64(f64::NAN), json!({"$f64": "NaN"}));
    check(Mp::F64(f64::NEG_INFINITY), json!({"$f64": "-inf"}));
    check(Mp::F32(1.5), json!({"$f32": 1.5}));
    check(Mp::F32(0.1), json!({"$f32": f64::from(0.1f32)}));
    check(Mp::F32(f32::INFINITY), json!({"$f32": "inf"}));
    check(Mp::from("hé"), json!("hé"));
    check(raw_string(&[0xff, 0x61]), json!({"$rawstr": "/2E="}));
    check(Mp::Binary(vec![0, 1, 2]), json!({"$bin": "AAEC"}));
    check(Mp::Ext(-1, vec![9]), json!({"$ext": [-1, "CQ=="]}));
    check(
        Mp::Map(vec![
            (Mp::from("b"), Mp::from(1)),
            (Mp::from("a"), Mp::from(2)),
        ]),
        json!({"b": 1, "a": 2}),
    );
    check(
        Mp::Map(vec![(Mp::from(1), Mp::from("x"))]),
        json!({"$map": [[1, "x"]]}),
    );
    check(
        Mp::Map(vec![(Mp::from("$bin"), Mp::from("x"))]),
        json!({"$map": [["$bin", "x"]]}),
    );
    check(
        Mp::Map(vec![(Mp::from("k"), Mp::Nil), (Mp::from("k"), Mp::from(1))]),
        json!({"$map": [["k", null], ["k", 1]]}),
    );
    // Two keys starting with `$` are not a tag.
    check(
        Mp::Map(vec![(Mp::from("$a"), Mp::Nil), (Mp::from("$b"), Mp::Nil)]),
        json!({"$a": null, "$b": null}),
    );
}

#[test]
fn map_key_order_survives_text() {
    let text = r#"{"z": 1, "a": 2, "m": 3}"#;
    let j: Js = serde_json::from_str(text).unwrap();
    let mp = from_json(&j).unwrap();
    let keys: Vec<_> = mp
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["z", "a", "m"]);
}

#[test]
fn bad_tags_name_the_path() {
    let e = from_json(&json!({"a": [1, {"$nope": 1}]})).unwrap_err();
    assert_eq!(e.path, "$.a[1].$nope");
    assert!(e.reason.contains("unknown tag"));
    let e = from_json(&json!({"$bin": "!!"})).unwrap_err();
    assert!(e.reason.contains("base64"));
    let e = from_json(&json!({"$f32": 0.1})).unwrap_err();
    assert!(e.reason.contains("float32"));
    let e = from_json(&json!({"$ext": [300, ""]})).unwrap_err();
    assert!(e.reason.contains("-128"));
}
