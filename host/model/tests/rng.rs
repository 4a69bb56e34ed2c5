//! The built-in schemas are valid RELAX NG for standard validators (jing, xmllint), and
//! resources serialised to XML validate against their type's schema with both tools.
//! Needs Debian's `jing` and `libxml2-utils`.

use std::path::{Path, PathBuf};
use std::process::Command;

use allpeers_model::resource::{Child, Resource, Value};
use allpeers_model::schema::{BUILTIN_FILES, DataType, PropDef, Registry};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn tool(name: &str) -> String {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{name}` is not installed: apt-get install jing libxml2-utils"
    );
    name.to_string()
}

fn run(cmd: &str, args: &[&Path]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // jing's Debian wrapper prints classpath warnings; ignore those lines.
    let text: String = text
        .lines()
        .filter(|l| !l.contains("[warning]"))
        .collect::<Vec<_>>()
        .join("\n");
    (out.status.success(), text)
}

fn sample(p: &PropDef, i: i64) -> Value {
    let one = |k: i64| match p.datatype {
        DataType::Boolean => Value::Bool(k % 2 == 0),
        DataType::Integer => Value::Integer(-42 + k),
        DataType::Decimal => Value::Decimal(1.5e-3 * (k + 1) as f64),
        DataType::Date => Value::Date(1_795_575_600_123 + k),
        DataType::Binary => Value::Binary(vec![0, 1, 2, 255, k as u8]),
        DataType::String => Value::String(format!("text <&> \"quoted\" 'single' ✓ {k}")),
    };
    if p.multi {
        Value::List(vec![one(i), one(i + 1)])
    } else {
        one(i)
    }
}

fn full(reg: &Registry, type_name: &str) -> Resource {
    let mut r = Resource::new(type_name).with_id(&format!("id-{type_name}"));
    for (_, p) in reg.all_props(type_name) {
        r.properties.insert(p.name.clone(), sample(p, 0));
    }
    for c in reg.all_children(type_name) {
        let ct = reg.get(&c.type_name).unwrap();
        for k in 0..2 {
            let mut ch = Child::default();
            for p in &ct.props {
                ch.properties.insert(p.name.clone(), sample(p, k));
            }
            r = r.with_child(&c.name, ch);
        }
    }
    r
}

fn minimal(reg: &Registry, type_name: &str) -> Resource {
    let mut r = Resource::new(type_name).with_id(&format!("min-{type_name}"));
    for (_, p) in reg.all_props(type_name) {
        if p.required {
            r.properties.insert(p.name.clone(), sample(p, 3));
        }
    }
    r
}

#[test]
fn schemas_pass_jing() {
    let jing = tool("jing");
    for (file, _) in BUILTIN_FILES {
        let (ok, out) = run(&jing, &[&schemas_dir().join(file)]);
        assert!(ok, "jing refused {file}: {out}");
    }
}

#[test]
fn resources_validate_with_jing_and_xmllint() {
    let jing = tool("jing");
    let xmllint = tool("xmllint");
    let reg = Registry::builtin();
    let dir = tempfile::tempdir().unwrap();
    for t in reg.types().filter(|t| !t.anonymous) {
        let schema = schemas_dir().join(format!("{}.rng", t.name));
        for mut r in [full(&reg, &t.name), minimal(&reg, &t.name)] {
            reg.validate(&mut r)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            let xml = reg.to_xml(&r);
            let path = dir.path().join(format!("{}.xml", r.id));
            std::fs::write(&path, &xml).unwrap();
            let (ok, out) = run(&jing, &[&schema, &path]);
            assert!(ok, "jing: {} does not validate:\n{out}\n{xml}", r.id);
            let (ok, out) = run(
                &xmllint,
                &[Path::new("--noout"), Path::new("--relaxng"), &schema, &path],
            );
            assert!(ok, "xmllint: {} does not validate:\n{out}\n{xml}", r.id);
        }
    }
}

#[test]
fn tools_reject_what_the_model_rejects() {
    // A missing required property: the model refuses it, and so do both validators.
    let jing = tool("jing");
    let xmllint = tool("xmllint");
    let reg = Registry::builtin();
    let dir = tempfile::tempdir().unwrap();
    let mut r = minimal(&reg, "Image");
    reg.validate(&mut r).unwrap();
    r.properties.remove("name");
    assert!(reg.clone().validate(&mut r.clone()).is_err());
    let path = dir.path().join("bad.xml");
    std::fs::write(&path, reg.to_xml(&r)).unwrap();
    let schema = schemas_dir().join("Image.rng");
    assert!(!run(&jing, &[&schema, &path]).0);
    assert!(
        !run(
            &xmllint,
            &[Path::new("--noout"), Path::new("--relaxng"), &schema, &path]
        )
        .0
    );
    // A wrongly typed value.
    let xml = reg
        .to_xml(&minimal(&reg, "Image"))
        .replace("</Image>", "  <width>wide</width>\n</Image>");
    std::fs::write(&path, xml).unwrap();
    assert!(!run(&jing, &[&schema, &path]).0);
    assert!(
        !run(
            &xmllint,
            &[Path::new("--noout"), Path::new("--relaxng"), &schema, &path]
        )
        .0
    );
}
