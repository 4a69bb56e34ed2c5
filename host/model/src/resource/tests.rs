use super::*;

fn image() -> Resource {
    Resource::new("Image")
        .with_id("img-1")
        .with("owner", "ap-me")
        .with("created", "2026-11-25T03:00:00.000Z")
        .with("modified", "2026-11-25T03:00:00Z")
        .with("name", "cat.png")
        .with("width", 640i64)
        .with("thumbnail", "AAEC")
}

#[test]
fn valid_image_normalises() {
    let reg = Registry::builtin();
    let mut r = image().with_meta("rating", 5i64);
    reg.validate(&mut r).unwrap();
    assert_eq!(r.properties["created"], Value::Date(1_795_575_600_000));
    assert_eq!(r.properties["thumbnail"], Value::Binary(vec![0, 1, 2]));
    // JSON round trip keeps the typed form after re-validation.
    let json = serde_json::to_string(&r).unwrap();
    let mut back: Resource = serde_json::from_str(&json).unwrap();
    reg.validate(&mut back).unwrap();
    assert_eq!(back, r);
}

#[test]
fn errors_are_precise() {
    let reg = Registry::builtin();
    let mut r = image()
        .with("width", "wide")
        .with("colour", "red")
        .with("title", "a\0b")
        .with_meta("rating", "five");
    r.properties.remove("name");
    let e = reg.validate(&mut r).unwrap_err();
    let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"properties.width"), "{e}");
    assert!(paths.contains(&"properties.colour"), "{e}");
    assert!(paths.contains(&"properties.name"), "{e}");
    assert!(paths.contains(&"properties.title"), "{e}");
    assert!(paths.contains(&"meta.rating"), "{e}");
    assert!(e.to_string().contains("expected integer"), "{e}");
}

#[test]
fn children_and_lists() {
    let reg = Registry::builtin();
    let mut m = Resource::new("Message")
        .with_id("m1")
        .with("owner", "me")
        .with("created", 0i64)
        .with("modified", 0i64)
        .with("sender", "me")
        .with("sent", "2026-01-01T00:00:00Z")
        .with("attachments", vec!["a", "b"])
        .with_child(
            "receipt",
            Child::default()
                .with("peer", "p1")
                .with("read", "2026-01-01T00:00:01Z"),
        );
    reg.validate(&mut m).unwrap();
    let mut bad = m
        .clone()
        .with_child("receipt", Child::default().with("delivered", "x"));
    let e = reg.validate(&mut bad).unwrap_err();
    let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"children.receipt[1].properties.peer"),
        "{e}"
    );
    assert!(
        paths.contains(&"children.receipt[1].properties.delivered"),
        "{e}"
    );
    let mut bad = m.clone().with("sender", vec!["x"]);
    assert!(reg.validate(&mut bad).is_err());
    let mut bad = m.clone().with("attachments", "x");
    assert!(reg.validate(&mut bad).is_err());
}

#[test]
fn identity_checks() {
    let reg = Registry::builtin();
    for (id, ty) in [
        ("", "Image"),
        ("a b", "Image"),
        ("ok", "Nope"),
        ("ok", "Receipt"),
    ] {
        let mut r = image().with_id(id);
        r.type_name = ty.into();
        assert!(reg.validate(&mut r).is_err(), "{id} {ty}");
    }
    let mut r = image().with("title", "x".repeat(MAX_STRING_BYTES + 1));
    assert!(reg.validate(&mut r).is_err());
}

#[test]
fn xml_and_render() {
    let reg = Registry::builtin();
    let mut r = image().with("title", "<cats & \"dogs\">");
    reg.validate(&mut r).unwrap();
    let xml = reg.to_xml(&r);
    assert!(
        xml.contains("<Image xmlns=\"urn:allpeers:resource:1\" id=\"img-1\">"),
        "{xml}"
    );
    assert!(xml.contains("&lt;cats &amp; &quot;dogs&quot;&gt;"), "{xml}");
    assert!(
        xml.contains("<created>2026-11-25T03:00:00.000Z</created>"),
        "{xml}"
    );
    let v = reg.render(&r);
    assert_eq!(v.title, "<cats & \"dogs\">");
    assert_eq!(v.lineage, ["Resource", "File", "Image"]);
    assert!(
        v.fields
            .iter()
            .any(|f| f.label == "Mime type" && !f.present)
    );
    assert!(
        v.fields
            .iter()
            .any(|f| f.name == "width" && f.text == "640")
    );
}

#[test]
fn patch_applies() {
    let mut r = image();
    r.apply(
        &Patch::default()
            .set("width", 3i64)
            .set("name", Value::Null)
            .set_meta("rating", 1i64),
    );
    assert_eq!(r.get("width"), Some(&Value::Integer(3)));
    assert!(r.get("name").is_none());
    assert_eq!(r.meta["rating"], Value::Integer(1));
}

#[test]
fn an_append_adds_to_the_slot_as_it_is() {
    let mut r = image().with_child("notes", Child::default().with("text", "a friend's"));
    let mut append = Patch::default();
    append
        .append
        .insert("notes".into(), vec![Child::default().with("text", "mine")]);
    assert!(append.touches_content());
    r.apply(&append);
    let texts: Vec<_> = r.children["notes"]
        .iter()
        .map(|c| c.properties["text"].clone())
        .collect();
    assert_eq!(texts, vec![Value::from("a friend's"), Value::from("mine")]);
    append.append.insert("tags".into(), vec![Child::default()]);
    r.apply(&append);
    assert_eq!(
        (r.children["notes"].len(), r.children["tags"].len()),
        (3, 1)
    );
}

#[test]
fn cli_table_is_aligned_and_terminal_safe() {
    let reg = Registry::builtin();
    // (ESC is refused by validation; the table must be safe for unvalidated values too.)
    let a = image().with("title", "evil\u{1b}[31mred\nline");
    let mut b = Resource::new("Link")
        .with_id("l1")
        .with("owner", "me")
        .with("created", 0i64)
        .with("modified", 0i64)
        .with("url", "https://example.org");
    reg.validate(&mut b).unwrap();
    let t = reg.table(&[a, b]);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("ID"));
    assert!(!t.contains('\u{1b}'));
    assert!(lines[1].contains("evil?[31mred?line"));
    assert!(lines[2].contains("https://example.org"));
    assert_eq!(lines[1].find("Image"), lines[2].find("Link"));
}
