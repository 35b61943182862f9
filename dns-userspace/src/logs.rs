//! The daemon's logs: where they go and how values read.
//!
//! * Text to stderr, with ANSI colour only when stderr is a terminal (and `NO_COLOR` is
//!   unset), or JSON lines (`--log-format json`).
//! * `HOTPOOL_LOG` sets the filter (default `info`); the debug chatter of the libraries
//!   underneath (aya's object loader, hyper, rustls, ...) stays at `info` unless
//!   `HOTPOOL_LOG` names them.
//! * Values are written for people: fields go through `Display` (with rounding where a
//!   figure is measured), never Rust's `Debug`. A list field is a [`List`]: `[a, b]` in
//!   text, a JSON array in JSON logs (tracing records field values as text; the JSON
//!   writer turns the marked ones back into JSON).

use std::{
    fmt,
    io::{self, IsTerminal as _, Write as _},
    sync::atomic::{AtomicBool, Ordering},
};

use serde::Serialize;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Libraries whose debug output floods the daemon's (aya's object loader logs every
/// relocation); kept at `info` unless `HOTPOOL_LOG` names them.
pub const QUIET_TARGETS: &[&str] = &[
    "aya",
    "aya_obj",
    "h2",
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
    "tower",
    "tower_http",
    "axum",
];

/// Whether list fields are written as JSON (set once by [`init`]).
static JSON_FIELDS: AtomicBool = AtomicBool::new(false);

/// Marks a field value that is JSON text, for [`JsonWriter`] to embed as JSON.
const JSON_MARK: &str = "\u{1}json:";

/// The filter for `HOTPOOL_LOG` (`None`: unset): its directives, or `info`, plus
/// `target=info` for every [`QUIET_TARGETS`] entry it does not name.
pub fn filter(spec: Option<&str>) -> Result<EnvFilter, String> {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let mut directives = vec![spec.to_string()];
    let named = |target: &str| {
        spec.split(',').any(|d| {
            let d = d.trim();
            d.split(['=', '[']).next() == Some(target)
        })
    };
    for target in QUIET_TARGETS {
        if !named(target) {
            directives.push(format!("{target}=info"));
        }
    }
    EnvFilter::builder()
        .parse(directives.join(","))
        .map_err(|e| format!("invalid HOTPOOL_LOG {spec:?}: {e}"))
}

/// Whether stderr gets ANSI colour: a terminal, and `NO_COLOR` unset.
pub fn colour() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Sets up logging to stderr. A bad `HOTPOOL_LOG` is reported (once logging works) and
/// the default filter used.
pub fn init(format: LogFormat) {
    let spec = std::env::var("HOTPOOL_LOG").ok();
    let (filter, problem) = match filter(spec.as_deref()) {
        Ok(f) => (f, None),
        Err(e) => (
            filter(None).unwrap_or_else(|_| EnvFilter::new("info")),
            Some(e),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour() && format == LogFormat::Text);
    match format {
        LogFormat::Text => builder.with_writer(io::stderr).init(),
        LogFormat::Json => {
            JSON_FIELDS.store(true, Ordering::Relaxed);
            builder.json().with_writer(JsonWriter).init();
        }
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}; using the default filter");
    }
}

/// A list field: `[a, b]` in text logs, a JSON array in JSON logs. Items go through their
/// `Display` in text and their `Serialize` in JSON (numbers stay numbers).
pub struct List<'a, T>(pub &'a [T]);

impl<T: fmt::Display + Serialize> fmt::Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, JSON_FIELDS.load(Ordering::Relaxed))
    }
}

impl<T: fmt::Display + Serialize> List<'_, T> {
    fn write(&self, f: &mut fmt::Formatter<'_>, json: bool) -> fmt::Result {
        if json {
            let text = serde_json::to_string(self.0).map_err(|_| fmt::Error)?;
            return write!(f, "{JSON_MARK}{text}");
        }
        f.write_str("[")?;
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        f.write_str("]")
    }
}

/// Writes JSON log lines to stderr with the marked field values ([`List`]) embedded as
/// JSON instead of as strings.
#[derive(Clone, Copy)]
pub struct JsonWriter;

/// One line being written.
pub struct JsonLine(Vec<u8>);

impl<'a> MakeWriter<'a> for JsonWriter {
    type Writer = JsonLine;
    fn make_writer(&'a self) -> JsonLine {
        JsonLine(Vec::with_capacity(256))
    }
}

impl io::Write for JsonLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for JsonLine {
    fn drop(&mut self) {
        let line = unmark(&self.0);
        let _ = io::stderr().lock().write_all(&line);
    }
}

/// A JSON log line with every marked string value replaced by the JSON it carries; the
/// line unchanged when it holds no mark or does not parse.
pub fn unmark(line: &[u8]) -> Vec<u8> {
    // The mark is a control character, which the JSON formatter escapes.
    if !line.windows(6).any(|w| w == b"\\u0001") {
        return line.to_vec();
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(line) else {
        return line.to_vec();
    };
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Some(json) = s.strip_prefix(JSON_MARK)
                    && let Ok(parsed) = serde_json::from_str(json)
                {
                    *v = parsed;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    let mut out = serde_json::to_vec(&value).unwrap_or_else(|_| line.to_vec());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    struct Shown<'a, T>(&'a List<'a, T>, bool);
    impl<T: fmt::Display + Serialize> fmt::Display for Shown<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.write(f, self.1)
        }
    }

    #[test]
    fn lists_read_as_lists() {
        let addrs: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(Shown(&List(&addrs), false).to_string(), "[127.0.0.1, ::1]");
        let ms = [0.381, 12.0];
        assert_eq!(Shown(&List(&ms), false).to_string(), "[0.381, 12]");
        let marked = Shown(&List(&ms), true).to_string();
        assert_eq!(marked, "\u{1}json:[0.381,12.0]");
        // As the JSON formatter writes the field, and as it comes out.
        let line = serde_json::json!({
            "level": "INFO",
            "fields": { "message": "hotpool running", "listen": marked, "port": 53, "other": "text" },
        });
        let out = unmark(format!("{line}\n").as_bytes());
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["fields"]["listen"], serde_json::json!([0.381, 12.0]));
        assert_eq!(back["fields"]["other"], "text");
        assert_eq!(back["fields"]["port"], 53);
        assert!(out.ends_with(b"}\n"));
        let plain = b"{\"fields\":{\"message\":\"x\"}}\n";
        assert_eq!(unmark(plain), plain);
    }

    #[test]
    fn library_debug_stays_quiet_unless_named() {
        let f = filter(Some("debug")).unwrap().to_string();
        assert!(f.contains("aya_obj=info"), "{f}");
        assert!(f.contains("hyper=info"), "{f}");
        let f = filter(Some("debug,aya_obj=trace")).unwrap().to_string();
        assert!(
            f.contains("aya_obj=trace") && !f.contains("aya_obj=info"),
            "{f}"
        );
        assert!(f.contains("aya=info"), "{f}");
        let f = filter(None).unwrap().to_string();
        assert!(
            f.starts_with("info") || f.contains(",info") || f.contains("info,"),
            "{f}"
        );
        let e = filter(Some("hotpool=loud")).unwrap_err();
        assert!(e.contains("invalid HOTPOOL_LOG \"hotpool=loud\""), "{e}");
    }
}
