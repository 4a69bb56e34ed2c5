use super::*;

#[test]
fn json_form_round_trips() {
    let j = r#"{"type":"File","where":[{"prop":{"name":"size","op":">","value":1000}},
        {"any":[{"prop":{"name":"mimeType","op":"prefix","value":"image/"}},{"meta":{"name":"rating","op":">=","value":4}}]},
        {"not":{"prop":{"name":"title","op":"isNull"}}},
        {"itemsOf":{"type":"List","where":[{"prop":{"name":"title","op":"=","value":"Holiday"}}]}}],
        "sort":[{"prop":"modified","desc":true}],"limit":50,"offset":10}"#;
    let q = Query::from_json(j).unwrap();
    let again = Query::from_json(&serde_json::to_string(&q).unwrap()).unwrap();
    assert_eq!(q, again);
    let built = Query::of("File")
        .where_prop("size", Op::Gt, 1000i64)
        .or(vec![
            Expr::prop("mimeType", Op::Prefix, "image/"),
            Expr::meta("rating", Op::Ge, 4i64),
        ])
        .and(Expr::Not(Box::new(Expr::is_null("title"))))
        .and(Expr::ItemsOf(Box::new(Query::of("List").where_prop(
            "title",
            Op::Eq,
            "Holiday",
        ))))
        .sort_by("modified", true)
        .limit(50)
        .offset(10);
    assert_eq!(q, built);
    let reg = Registry::builtin();
    let c = reg.check_query(&q).unwrap();
    assert_eq!(c.chain, ["Resource", "File"]);
    assert!(c.has_list_conditions());
}

#[test]
fn checks_names_ops_and_values() {
    let reg = Registry::builtin();
    let bad = [
        (r#"{"type":"Nope"}"#, "unknown type"),
        (r#"{"type":"Receipt"}"#, "anonymous"),
        (
            r#"{"type":"File","where":[{"prop":{"name":"x\"; DROP TABLE t_Resource; --","op":"=","value":1}}]}"#,
            "unknown property",
        ),
        (
            r#"{"type":"File","where":[{"prop":{"name":"size","op":"=","value":"big"}}]}"#,
            "expected integer",
        ),
        (
            r#"{"type":"File","where":[{"prop":{"name":"size","op":"prefix","value":"1"}}]}"#,
            "string properties only",
        ),
        (
            r#"{"type":"File","where":[{"prop":{"name":"size","op":"="}}]}"#,
            "needs a value",
        ),
        (
            r#"{"type":"File","where":[{"prop":{"name":"size","op":"~"}}]}"#,
            "malformed",
        ),
        (
            r#"{"type":"File","where":[{"meta":{"name":"nope","op":"isNull"}}]}"#,
            "unknown metadata",
        ),
        (
            r#"{"type":"File","sort":[{"prop":"nope"}]}"#,
            "unknown property",
        ),
        (r#"{"type":"File","limit":100000000}"#, "limit"),
        (r#"{"type":"File","bogus":1}"#, "malformed"),
        (
            r#"{"type":"Image","where":[{"prop":{"name":"taken","op":"<","value":"yesterday"}}]}"#,
            "expected date",
        ),
    ];
    for (j, want) in bad {
        let err = Query::from_json(j)
            .and_then(|q| reg.check_query(&q))
            .unwrap_err();
        assert!(err.to_string().contains(want), "{j}: {err}");
    }
    // Hostile values are fine: they are data.
    let q = Query::of("File").where_prop("name", Op::Eq, "'; DROP TABLE t_File; --\0");
    assert!(reg.check_query(&q).is_ok());
}

#[test]
fn bounded() {
    let reg = Registry::builtin();
    let mut e = Expr::prop("size", Op::Gt, 1i64);
    for _ in 0..20 {
        e = Expr::Not(Box::new(e));
    }
    assert!(
        reg.check_query(&Query::of("File").and(e))
            .unwrap_err()
            .reason
            .contains("deeply")
    );
    let many: Vec<Expr> = (0..300)
        .map(|i| Expr::prop("size", Op::Eq, i as i64))
        .collect();
    assert!(
        reg.check_query(&Query::of("File").or(many))
            .unwrap_err()
            .reason
            .contains("conditions")
    );
}
