//! `allpeers install` / `uninstall`: native-messaging host manifests for each browser.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub const HOST_NAME: &str = "net.allpeers.host";
const FIREFOX_TEMPLATE: &str = include_str!("../../../manifests/firefox.json");
const CHROMIUM_TEMPLATE: &str = include_str!("../../../manifests/chromium.json");
const EXTENSION_IDS: &str = include_str!("../../../extension/identity.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Browser {
    Firefox,
    Chrome,
    Chromium,
}

impl Browser {
    pub const ALL: [Browser; 3] = [Browser::Firefox, Browser::Chrome, Browser::Chromium];

    /// The per-user directory this browser reads host manifests from.
    pub fn manifest_dir(self, home: &Path) -> anyhow::Result<PathBuf> {
        if cfg!(target_os = "linux") {
            Ok(home.join(match self {
                Browser::Firefox => ".mozilla/native-messaging-hosts",
                Browser::Chrome => ".config/google-chrome/NativeMessagingHosts",
                Browser::Chromium => ".config/chromium/NativeMessagingHosts",
            }))
        } else if cfg!(target_os = "macos") {
            Ok(home.join("Library/Application Support").join(match self {
                Browser::Firefox => "Mozilla/NativeMessagingHosts",
                Browser::Chrome => "Google/Chrome/NativeMessagingHosts",
                Browser::Chromium => "Chromium/NativeMessagingHosts",
            }))
        } else {
            bail!(
                "on this OS the manifest must be registered in the registry: see manifests/README.md"
            )
        }
    }
}

#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub browsers: Vec<Browser>,
    /// A Chromium `--user-data-dir`: the manifest goes into `<dir>/NativeMessagingHosts`.
    pub chromium_profile: Option<PathBuf>,
    /// A non-default data dir to bake into a launcher script, so this browser profile
    /// talks to that node.
    pub data_dir: Option<PathBuf>,
    pub home: PathBuf,
}

#[derive(serde::Deserialize)]
struct ExtensionIds {
    chromium_id: String,
    firefox_id: String,
}

fn targets(options: &InstallOptions) -> anyhow::Result<Vec<(Browser, PathBuf)>> {
    options
        .browsers
        .iter()
        .map(|&browser| {
            let dir = match (&options.chromium_profile, browser) {
                (Some(profile), Browser::Chromium | Browser::Chrome) => {
                    profile.join("NativeMessagingHosts")
                }
                _ => browser.manifest_dir(&options.home)?,
            };
            Ok((browser, dir.join(format!("{HOST_NAME}.json"))))
        })
        .collect()
}

/// Writes one manifest per browser; returns their paths.
pub fn install(options: &InstallOptions) -> anyhow::Result<Vec<PathBuf>> {
    let ids: ExtensionIds =
        serde_json::from_str(EXTENSION_IDS).expect("extension/identity.json is valid");
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the allpeers binary")?;
    let host_path = match &options.data_dir {
        Some(data_dir) => write_launcher(&exe, data_dir)?,
        None => exe,
    };
    let host_path = host_path
        .to_str()
        .context("the binary's path is not UTF-8")?
        .to_string();
    let mut written = Vec::new();
    for (browser, path) in targets(options)? {
        let template = match browser {
            Browser::Firefox => FIREFOX_TEMPLATE,
            Browser::Chrome | Browser::Chromium => CHROMIUM_TEMPLATE,
        };
        // Fill through JSON so a path with quotes or backslashes stays valid JSON.
        let mut manifest: serde_json::Value =
            serde_json::from_str(template).expect("templates are valid JSON");
        fill(
            &mut manifest,
            &[
                ("{{name}}", HOST_NAME),
                ("{{path}}", &host_path),
                ("{{firefox_id}}", &ids.firefox_id),
                ("{{chromium_id}}", &ids.chromium_id),
            ],
        );
        let dir = path.parent().expect("manifest paths have a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Removes the manifests `install` would write; returns those that existed.
pub fn uninstall(options: &InstallOptions) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for (_, path) in targets(options)? {
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    Ok(removed)
}

fn fill(value: &mut serde_json::Value, vars: &[(&str, &str)]) {
    match value {
        serde_json::Value::String(s) => {
            for (key, replacement) in vars {
                *s = s.replace(key, replacement);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| fill(v, vars)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| fill(v, vars)),
        _ => {}
    }
}

/// Browsers start the host with fixed arguments, so a non-default data dir travels in a
/// small launcher script in that data dir.
fn write_launcher(exe: &Path, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/sh\n# Written by `allpeers install`: starts the native-messaging host for this data dir.\nexec {} --data-dir {} native-host \"$@\"\n",
        quote(exe),
        quote(&data_dir)
    );
    let path = data_dir.join("allpeers-native-host");
    std::fs::write(&path, script).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_written_with_absolute_paths_and_fixed_ids_then_removed() {
        let home = tempfile::tempdir().unwrap();
        let options = InstallOptions {
            browsers: Browser::ALL.to_vec(),
            chromium_profile: None,
            data_dir: None,
            home: home.path().to_path_buf(),
        };
        let written = install(&options).unwrap();
        assert_eq!(written.len(), 3);
        let firefox: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&written[0]).unwrap()).unwrap();
        assert!(written[0].ends_with(".mozilla/native-messaging-hosts/net.allpeers.host.json"));
        assert_eq!(firefox["allowed_extensions"][0], "allpeers@allpeers.net");
        assert!(Path::new(firefox["path"].as_str().unwrap()).is_absolute());
        let chromium: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&written[2]).unwrap()).unwrap();
        assert_eq!(
            chromium["allowed_origins"][0],
            "chrome-extension://ccjfjlcndgkdlejcmgpopanpmdklkkpb/"
        );
        assert_eq!(chromium["name"], HOST_NAME);
        assert_eq!(uninstall(&options).unwrap(), written);
        assert!(uninstall(&options).unwrap().is_empty());
    }

    #[test]
    fn a_data_dir_goes_into_a_launcher_and_a_profile_dir_is_honoured() {
        let home = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let options = InstallOptions {
            browsers: vec![Browser::Chromium],
            chromium_profile: Some(profile.path().to_path_buf()),
            data_dir: Some(data.path().to_path_buf()),
            home: home.path().to_path_buf(),
        };
        let written = install(&options).unwrap();
        assert_eq!(
            written,
            vec![
                profile
                    .path()
                    .join("NativeMessagingHosts/net.allpeers.host.json")
            ]
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&written[0]).unwrap()).unwrap();
        let launcher = std::fs::read_to_string(manifest["path"].as_str().unwrap()).unwrap();
        assert!(launcher.contains("native-host \"$@\""));
        assert!(launcher.contains(&data.path().canonicalize().unwrap().display().to_string()));
    }
}
