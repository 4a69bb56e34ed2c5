use super::*;

const HEAD: &str = r#"<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1" ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">"#;

fn schema(body: &str) -> String {
    format!("{HEAD}\n{body}\n</grammar>\n")
}

fn photo(extra: &str) -> String {
    schema(&format!(
        r#"<define name="Photo.content" ap:type="Photo" ap:extends="Image">
  <interleave>
    <ref name="Image.content"/>
    {extra}
  </interleave>
</define>"#
    ))
}

#[test]
fn builtins_load() {
    let r = Registry::builtin();
    for t in [
        "Resource", "Peer", "File", "Audio", "Video", "Image", "Text", "Link", "List", "Message",
        "Chat", "Share",
    ] {
        assert!(r.get(t).is_some(), "{t}");
    }
    assert!(r.is_a("Image", "File"));
    assert!(r.is_a("Image", "Resource"));
    assert!(!r.is_a("File", "Image"));
    let names: Vec<_> = r.chain("Image").iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Resource", "File", "Image"]);
    assert_eq!(
        r.prop("Image", "size").map(|(t, _)| t.name.as_str()),
        Some("File")
    );
    assert!(
        r.prop("Image", "width")
            .is_some_and(|(_, p)| p.indexed && p.datatype == DataType::Integer)
    );
    assert_eq!(r.meta_props("Image").len(), 6);
    let sub: Vec<_> = r.subtypes("File").iter().map(|t| t.name.clone()).collect();
    assert_eq!(sub.len(), 5);
    assert!(r.get("Receipt").is_some_and(|t| t.anonymous));
    assert_eq!(r.files().len(), BUILTIN_FILES.len());
}

#[test]
fn app_type_registers() {
    let mut r = Registry::builtin();
    let names = r
        .register("Photo.rng", &photo(r#"<optional><element name="camera" ap:index="true"><data type="string"/></element></optional>"#))
        .unwrap();
    assert_eq!(names, ["Photo"]);
    assert!(r.is_a("Photo", "File"));
    assert_eq!(r.all_props("Photo").len(), 4 + 4 + 10 + 1);
}

fn refused(file_text: &str) -> SchemaError {
    let mut r = Registry::builtin();
    let before = format!("{:?}", r.types().collect::<Vec<_>>());
    let e = r.register("Bad.rng", file_text).unwrap_err();
    assert_eq!(
        before,
        format!("{:?}", r.types().collect::<Vec<_>>()),
        "registry changed"
    );
    assert_eq!(e.file, "Bad.rng");
    e
}

#[test]
fn bad_xml() {
    let e = refused(&format!(
        "{HEAD}\n<define name=\"x\">\n  <element name=\"a\">\n</grammar>"
    ));
    assert!(e.reason.contains("malformed XML"), "{e}");
    assert!(e.line >= 3, "{e}");
    let e = refused("not xml at all <");
    assert!(
        e.reason.contains("malformed XML") || e.reason.contains("unexpected text"),
        "{e}"
    );
    let e = refused("");
    assert!(e.reason.contains("no root"), "{e}");
}

#[test]
fn unknown_datatype() {
    let e = refused(&photo(
        "\n<element name=\"camera\"><data type=\"frobnicate\"/></element>",
    ));
    assert!(e.reason.contains("unknown datatype 'frobnicate'"), "{e}");
    assert_eq!(e.line, 6, "{e}");
}

#[test]
fn missing_parent() {
    let e = refused(&schema(
        r#"<define name="Thing.content" ap:type="Thing" ap:extends="Nope"><interleave><ref name="Nope.content"/></interleave></define>"#,
    ));
    assert!(e.reason.contains("missing parent type 'Nope'"), "{e}");
    assert_eq!(e.line, 2);
}

#[test]
fn inheritance_cycle() {
    let mut r = Registry::builtin();
    let a = schema(
        r#"<define name="A.content" ap:type="A" ap:extends="B"><interleave><ref name="B.content"/></interleave></define>"#,
    );
    let b = schema(
        r#"<define name="B.content" ap:type="B" ap:extends="A"><interleave><ref name="A.content"/></interleave></define>"#,
    );
    let e = r.register_all(&[("A.rng", &a), ("B.rng", &b)]).unwrap_err();
    assert!(e.reason.contains("cycle in inheritance"), "{e}");
    assert!(r.get("A").is_none() && r.get("B").is_none());
}

#[test]
fn duplicate_property() {
    let e = refused(&photo(
        "<element name=\"camera\"><data type=\"string\"/></element>\n<element name=\"camera\"><data type=\"long\"/></element>",
    ));
    assert!(e.reason.contains("duplicate property 'camera'"), "{e}");
    assert_eq!(e.line, 6);
    // Inherited names collide too (File declares `size`).
    let e = refused(&photo(
        "<element name=\"size\"><data type=\"long\"/></element>",
    ));
    assert!(e.reason.contains("duplicate property 'size'"), "{e}");
    // ...case-insensitively, since they become SQL columns.
    let e = refused(&photo(
        "<element name=\"SIZE\"><data type=\"long\"/></element>",
    ));
    assert!(e.reason.contains("duplicate property"), "{e}");
}

#[test]
fn hostile_names_refused() {
    for name in [
        "a\"b",
        "x; DROP TABLE t_Resource; --",
        "a b",
        "",
        "1abc",
        &"x".repeat(65),
    ] {
        let e = refused(&photo(&format!(
            "<element name=\"{}\"><data type=\"string\"/></element>",
            quick_xml::escape::escape(name)
        )));
        assert!(
            e.reason.contains("invalid property name") || e.reason.contains("needs a name"),
            "{name}: {e}"
        );
    }
    let e = refused(&schema(
        r#"<define name="X&quot;;DROP.content" ap:type="X&quot;;DROP" ap:extends="Resource"><interleave><ref name="Resource.content"/></interleave></define>"#,
    ));
    assert!(e.reason.contains("invalid type name"), "{e}");
}

#[test]
fn other_refusals() {
    // Not extending anything.
    let e = refused(&schema(
        r#"<define name="Z.content" ap:type="Z"><interleave><empty/></interleave></define>"#,
    ));
    assert!(e.reason.contains("must extend"), "{e}");
    // Extends without ref.
    let e = refused(&schema(
        r#"<define name="Z.content" ap:type="Z" ap:extends="File"><interleave><empty/></interleave></define>"#,
    ));
    assert!(e.reason.contains("does not <ref"), "{e}");
    // Redefining a built-in from another file.
    let e = refused(&schema(
        r#"<define name="File.content" ap:type="File" ap:extends="Resource"><interleave><ref name="Resource.content"/></interleave></define>"#,
    ));
    assert!(e.reason.contains("already declared"), "{e}");
    // Reserved property.
    let e = refused(&photo(
        "<element name=\"id\"><data type=\"string\"/></element>",
    ));
    assert!(e.reason.contains("reserved"), "{e}");
    // Unknown child type.
    let e = refused(&photo(
        "<element name=\"lens\"><ref name=\"Lens.content\"/></element>",
    ));
    assert!(e.reason.contains("unknown type 'Lens'"), "{e}");
    // DOCTYPE (entity expansion) refused.
    let e = refused("<!DOCTYPE x [<!ENTITY a \"aaaa\">]><grammar/>");
    assert!(e.reason.contains("DOCTYPE"), "{e}");
    // Too big.
    let e = refused(&" ".repeat(MAX_SCHEMA_BYTES + 1));
    assert!(e.reason.contains("limit"), "{e}");
    // Deep nesting.
    let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
    let e = refused(&deep);
    assert!(e.reason.contains("nested too deeply"), "{e}");
}

#[test]
fn evolution() {
    let mut r = Registry::builtin();
    let v1 =
        photo(r#"<optional><element name="camera"><data type="string"/></element></optional>"#);
    r.register("Photo.rng", &v1).unwrap();
    // Adding an optional property is fine.
    let v2 = photo(
        r#"<optional><element name="camera"><data type="string"/></element></optional>
<optional><element name="lens"><data type="string"/></element></optional>"#,
    );
    r.register("Photo.rng", &v2).unwrap();
    assert!(r.prop("Photo", "lens").is_some());
    // Dropping a property would lose data.
    let e = r.register("Photo.rng", &v1).unwrap_err();
    assert!(e.reason.contains("would be lost"), "{e}");
    // Changing a datatype is refused.
    let v3 = photo(
        r#"<optional><element name="camera"><data type="long"/></element></optional>
<optional><element name="lens"><data type="string"/></element></optional>"#,
    );
    let e = r.register("Photo.rng", &v3).unwrap_err();
    assert!(e.reason.contains("cannot change"), "{e}");
    // A new required property is refused.
    let v4 = photo(
        r#"<optional><element name="camera"><data type="string"/></element></optional>
<optional><element name="lens"><data type="string"/></element></optional>
<element name="iso"><data type="long"/></element>"#,
    );
    let e = r.register("Photo.rng", &v4).unwrap_err();
    assert!(e.reason.contains("must be optional"), "{e}");
    assert!(r.prop("Photo", "iso").is_none());
}

#[test]
fn namespaces_prefixes_and_annotations() {
    // RELAX NG under a prefix, documentation annotations, comments and a PI are all fine.
    let text = r#"<?xml version="1.0"?>
<!-- a comment -->
<?some-pi data?>
<r:grammar xmlns:r="http://relaxng.org/ns/structure/1.0" xmlns:x="urn:allpeers:schema:1"
           xmlns:a="http://relaxng.org/ns/compatibility/annotations/1.0"
           datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <r:define name="Note.content" x:type="Note" x:extends="Resource" x:title="Note">
    <a:documentation>A short note.</a:documentation>
    <r:interleave>
      <r:ref name="Resource.content"/>
      <r:element name="text" x:index="true"><a:documentation>The text.</a:documentation><r:text/></r:element>
      <r:oneOrMore><r:element name="tag"><r:data type="string"><r:param name="maxLength">20</r:param></r:data></r:element></r:oneOrMore>
    </r:interleave>
  </r:define>
</r:grammar>"#;
    let mut r = Registry::builtin();
    r.register("Note.rng", text).unwrap();
    let t = r.get("Note").unwrap();
    assert_eq!(t.title.as_deref(), Some("Note"));
    let text_prop = t.prop("text").unwrap();
    assert!(text_prop.indexed && text_prop.required && text_prop.datatype == DataType::String);
    let tag = t.prop("tag").unwrap();
    assert!(tag.multi && tag.required);
    // The annotation namespace is what matters, not the prefix: an ap:type in another
    // namespace is not a type.
    let other = text.replace("urn:allpeers:schema:1", "urn:somebody-else");
    let e = Registry::builtin()
        .register("Note.rng", &other)
        .unwrap_err();
    assert!(e.reason.contains("declares no type"), "{e}");
    // Undeclared prefixes are refused.
    let e = Registry::builtin()
        .register("Note.rng", &text.replace("xmlns:x=", "xmlns:y="))
        .unwrap_err();
    assert!(e.reason.contains("undeclared namespace prefix"), "{e}");
}

#[test]
fn anonymous_children_and_metadata() {
    let text = schema(
        r#"<define name="Album.content" ap:type="Album" ap:extends="Resource" ap:metadata="AlbumMeta">
  <interleave>
    <ref name="Resource.content"/>
    <zeroOrMore><element name="track"><ref name="Track.content"/></element></zeroOrMore>
  </interleave>
</define>
<define name="Track.content" ap:type="Track" ap:anonymous="true">
  <interleave>
    <element name="n"><data type="long"/></element>
    <optional><element name="credit"><ref name="Credit.content"/></element></optional>
  </interleave>
</define>
<define name="Credit.content" ap:type="Credit" ap:anonymous="true">
  <element name="who"><data type="string"/></element>
</define>
<define name="AlbumMeta.content" ap:type="AlbumMeta" ap:anonymous="true">
  <optional><element name="played"><data type="long"/></element></optional>
</define>"#,
    );
    let mut r = Registry::builtin();
    r.register("Album.rng", &text).unwrap();
    assert_eq!(r.all_children("Album").len(), 1);
    assert_eq!(r.meta_props("Album").len(), 1);
    // A self-containing anonymous type is refused.
    let looped = text.replace(
        r#"<ref name="Credit.content"/>"#,
        r#"<ref name="Track.content"/>"#,
    );
    let e = Registry::builtin()
        .register("Album.rng", &looped)
        .unwrap_err();
    assert!(e.reason.contains("contains itself"), "{e}");
    // Metadata must be an anonymous type.
    let e = Registry::builtin()
        .register(
            "Album.rng",
            &text.replace(r#"ap:metadata="AlbumMeta""#, r#"ap:metadata="File""#),
        )
        .unwrap_err();
    assert!(e.reason.contains("must be anonymous"), "{e}");
}
