//! The `config` target: any text as `hotpool.toml` to [`Config::parse`], in a directory
//! with zone files and a token file it may name.
//!
//! Checked, besides "does not panic":
//! * a config that loads has loaded every zone it names and prints a `hotpool check`
//!   summary;
//! * an error names the config or one of the directory's files, has a message, and a line
//!   and column that exist in that file.
//!
//! Texts whose zone `file` or `token_file` is absolute or goes up with `..` are skipped:
//! they could name any file on the machine (`/dev/zero` never ends).

use std::path::{Component, Path, PathBuf};

use hotpool::config::{Config, ConfigError};

use crate::{Violation, seeds, world};

/// A directory with the files the configs name, removed on drop.
pub struct ConfigTarget {
    dir: PathBuf,
}

/// The files in the directory: name and content.
fn files() -> Vec<(&'static str, String)> {
    vec![
        ("example.test.zone", seeds::EXAMPLE_ZONE.to_string()),
        // Where the example config has it.
        ("zones/example.test.zone", seeds::EXAMPLE_ZONE.to_string()),
        ("world.zone", world::zone_text()),
        (
            "broken.zone",
            "$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nbad IN A 300.1.2.3\n".to_string(),
        ),
        (
            "api.token",
            "0123456789abcdef0123456789abcdef\n".to_string(),
        ),
    ]
}

impl ConfigTarget {
    /// Creates the directory under `parent` (a name with the process id).
    pub fn new(parent: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = parent.join(format!("hotpool-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("zones"))?;
        for (name, content) in files() {
            let path = dir.join(name);
            std::fs::write(&path, content)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Self { dir })
    }

    /// Where the config is read from.
    pub fn source(&self) -> PathBuf {
        self.dir.join("hotpool.toml")
    }

    /// The `config` target's body.
    pub fn check(&self, data: &[u8]) -> Result<(), Violation> {
        let text = String::from_utf8_lossy(data);
        if names_files_outside(&text) {
            return Ok(());
        }
        match Config::parse(&text, &self.source()) {
            Ok(cfg) => {
                if cfg.zone_data().len() != cfg.zones.len() {
                    return Err(Violation::new(format!(
                        "{} zones configured, {} loaded",
                        cfg.zones.len(),
                        cfg.zone_data().len()
                    )));
                }
                if cfg.summary().is_empty() {
                    return Err(Violation::new("empty summary".into()));
                }
                Ok(())
            }
            Err(e) => self.located(&text, &e),
        }
    }

    /// The error names a file we know, and a line and column inside it.
    fn located(&self, config: &str, e: &ConfigError) -> Result<(), Violation> {
        let bad = |what: &str| Err(Violation::new(format!("{what}: {e}")));
        if e.message().is_empty() {
            return bad("error without a message");
        }
        let text = if e.file() == self.source() {
            config.to_string()
        } else if e.file().starts_with(&self.dir) {
            match std::fs::read_to_string(e.file()) {
                Ok(text) => text,
                // A zone file that does not exist, named by the config.
                Err(_) if e.line().is_none() => return Ok(()),
                Err(_) => return bad("a line in a file that does not exist"),
            }
        } else {
            return bad("error about a file neither the config nor in its directory");
        };
        let Some(line) = e.line() else {
            return Ok(());
        };
        let Some(line_text) = text.split('\n').nth(line.wrapping_sub(1)) else {
            return bad("a line the file does not have");
        };
        match e.column() {
            Some(c) if c == 0 || c > line_text.chars().count() + 1 => {
                bad("a column the line does not have")
            }
            _ => Ok(()),
        }
    }
}

impl Drop for ConfigTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `text` names a zone file or token file outside the directory: an absolute path
/// or one with `..`. A text that is not TOML is parsed no further than that, so it reads
/// no file.
fn names_files_outside(text: &str) -> bool {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return false;
    };
    let outside = |v: Option<&toml::Value>| match v {
        Some(toml::Value::String(s)) => {
            let path = Path::new(s);
            path.is_absolute() || path.components().any(|c| c == Component::ParentDir)
        }
        _ => false,
    };
    let zones = match doc.get("zone") {
        Some(toml::Value::Array(zones)) => zones.iter().any(|z| outside(z.get("file"))),
        _ => false,
    };
    zones || outside(doc.get("api").and_then(|a| a.get("token_file")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bounded, mutate, rng::Rng};

    fn target() -> ConfigTarget {
        ConfigTarget::new(&std::env::temp_dir()).expect("creating the config directory")
    }

    #[test]
    fn seeds_load() {
        let t = target();
        // The example's paths (pins, sockets, the event log) are absolute; they are not read.
        for c in seeds::configs().iter().take(4) {
            Config::parse(c, &t.source()).unwrap_or_else(|e| panic!("{c}: {e}"));
            t.check(c.as_bytes()).unwrap();
        }
        // The last one names a broken zone file, at its line.
        let e = Config::parse(&seeds::configs()[4], &t.source()).unwrap_err();
        assert!(e.file().ends_with("broken.zone"), "{e}");
        assert_eq!(e.line(), Some(4), "{e}");
        t.check(seeds::configs()[4].as_bytes()).unwrap();
    }

    #[test]
    fn paths_outside_are_skipped() {
        assert!(names_files_outside("[[zone]]\nfile = \"/dev/zero\"\n"));
        assert!(names_files_outside(
            "zone = [{ file = \"zones/../../x\" }]\n"
        ));
        assert!(!names_files_outside("zone = [{ file = \"zones/x\" }]\n"));
        assert!(names_files_outside("[api]\ntoken_file = \"/proc/kcore\"\n"));
        assert!(!names_files_outside(
            "[[zone]]\nfile = \"x.zone\"\n[server]\npin_path = \"/sys/fs/bpf/x\"\n"
        ));
        assert!(!names_files_outside("not toml ["));
    }

    #[test]
    fn located_errors_are_checked() {
        let t = target();
        let e = Config::parse("[server]\nport = 0\n", &t.source()).unwrap_err();
        t.located("[server]\nport = 0\n", &e).unwrap();
        // The same error against a one-line text names a line it does not have.
        assert!(t.located("[server]", &e).is_err());
    }

    #[test]
    fn bounded_run() {
        let t = target();
        let seeds = seeds::configs();
        let tokens: Vec<&[u8]> = seeds::CONFIG_TOKENS.iter().map(|t| t.as_bytes()).collect();
        bounded::run(
            "config",
            1500,
            |rng: &mut Rng| {
                let base = rng.pick(&seeds).as_bytes();
                mutate::mutate(rng, base, &tokens, 4, 16 * 1024)
            },
            |input| t.check(input),
        );
    }
}
