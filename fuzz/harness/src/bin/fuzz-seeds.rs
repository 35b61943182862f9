//! `fuzz-seeds TARGET DIR DICT`: writes the seed inputs of a cargo-fuzz target (`answer`,
//! `zone` or `config`) into DIR as `seed-NNNN` files and its tokens as a libFuzzer
//! dictionary to DICT. `cargo xtask fuzz` runs it before each target.

use std::{path::PathBuf, process::ExitCode};

use hotpool_fuzz_harness::seeds;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, dir, dict] = args.as_slice() else {
        eprintln!("usage: fuzz-seeds answer|zone|config DIR DICT");
        return ExitCode::from(2);
    };
    let (inputs, tokens): (Vec<Vec<u8>>, Vec<Vec<u8>>) = match target.as_str() {
        "answer" => (
            seeds::queries(),
            vec![
                vec![0xc0, 0x0c],
                vec![0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0],
                vec![0, 0, 1, 0, 1],
            ],
        ),
        "zone" => (
            seeds::zones().into_iter().map(String::into_bytes).collect(),
            seeds::ZONE_TOKENS
                .iter()
                .map(|t| t.as_bytes().to_vec())
                .collect(),
        ),
        "config" => (
            seeds::configs()
                .into_iter()
                .map(String::into_bytes)
                .collect(),
            seeds::CONFIG_TOKENS
                .iter()
                .map(|t| t.as_bytes().to_vec())
                .collect(),
        ),
        other => {
            eprintln!("fuzz-seeds: no target {other:?} (answer, zone, config)");
            return ExitCode::from(2);
        }
    };
    let dir = PathBuf::from(dir);
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:04}")), input)?;
        }
        let dictionary: String = tokens
            .iter()
            .map(|t| format!("\"{}\"\n", escape(t)))
            .collect();
        std::fs::write(dict, dictionary)
    });
    match written {
        Ok(()) => {
            println!(
                "{} seeds in {}, {} tokens in {dict}",
                inputs.len(),
                dir.display(),
                tokens.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fuzz-seeds: writing {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// A token as libFuzzer's dictionary format writes it: printable ASCII as is (with `\` and
/// `"` escaped), everything else as `\xNN`.
fn escape(token: &[u8]) -> String {
    token
        .iter()
        .map(|&b| match b {
            b'\\' | b'"' => format!("\\{}", b as char),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02X}"),
        })
        .collect()
}
