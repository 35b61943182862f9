//! Pinned XDP links: the attachment of the program to an interface is a bpf link pinned in
//! the pin directory, so it outlives the daemon. A stopped, killed or crashed daemon leaves
//! the program answering from the maps it last published; the next one adopts the link (same
//! program) or swaps its own program in through it (`bpf_link_update`, atomic: there is no
//! moment without a program). Only removing the pin takes the kernel path away:
//! [`detach_pinned`] (`hotpool detach`).
//!
//! A link's pin is `link_<mode>_<interface>` (`link_native_eth0`, `link_generic_lo`): the
//! mode is fixed when a link is created, so it is part of the name. bpffs refuses names with
//! a dot, so a dot in the interface name is written `%2e` (and `%` as `%25`).

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

use aya::programs::XdpMode;

use crate::datapath::{
    DatapathError,
    sys::{self, BPF_LINK_TYPE_XDP, LinkInfo},
};

/// Prefix of a pinned link's file name.
const PREFIX: &str = "link_";

/// How the config, the metrics and a link pin's name call an attach mode: `native`,
/// `generic`, `offload` (aya's `Driver`, `Skb`, `Hardware`).
pub fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Driver => "native",
        XdpMode::Skb => "generic",
        XdpMode::Hardware => "offload",
        XdpMode::Default => "default",
    }
}

fn parse_mode(name: &str) -> Option<XdpMode> {
    Some(match name {
        "native" => XdpMode::Driver,
        "generic" => XdpMode::Skb,
        "offload" => XdpMode::Hardware,
        "default" => XdpMode::Default,
        _ => return None,
    })
}

/// The pin file name of the link of `iface` in `mode`.
pub fn pin_name(iface: &str, mode: XdpMode) -> String {
    let iface = iface.replace('%', "%25").replace('.', "%2e");
    format!("{PREFIX}{}_{iface}", mode_name(mode))
}

/// The interface and mode a pin file name stands for (`None`: not a link pin of ours).
pub fn parse_pin_name(name: &str) -> Option<(String, XdpMode)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (mode, iface) = rest.split_once('_')?;
    if iface.is_empty() {
        return None;
    }
    let iface = iface.replace("%2e", ".").replace("%25", "%");
    Some((iface, parse_mode(mode)?))
}

/// One pinned link found in a pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkPin {
    pub iface: String,
    pub mode: XdpMode,
    pub path: PathBuf,
}

impl fmt::Display for LinkPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} mode, {})",
            self.iface,
            mode_name(self.mode),
            self.path.display()
        )
    }
}

impl LinkPin {
    /// What the link is and where it is attached now.
    pub fn info(&self) -> io::Result<LinkInfo> {
        sys::link_info(&sys::obj_get(&self.path)?)
    }
}

/// The pinned links in `dir`, in name order (none if `dir` does not exist).
pub fn pinned_links(dir: &Path) -> Vec<LinkPin> {
    let mut out: Vec<LinkPin> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let (iface, mode) = parse_pin_name(&name.to_string_lossy())?;
            Some(LinkPin {
                iface,
                mode,
                path: e.path(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A link pin as found by [`check_pin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinStatus {
    /// An XDP link attached to the interface of that name here.
    Attached(LinkInfo),
    /// Not usable: the interface is gone or was recreated (the link is defunct), the pin is
    /// not an XDP link, or it cannot be opened. The reason.
    Stale(String),
}

/// Whether `pin` is a live XDP link on its interface (in the calling thread's namespace).
pub fn check_pin(pin: &LinkPin) -> PinStatus {
    let info = match pin.info() {
        Ok(info) => info,
        Err(e) => return PinStatus::Stale(format!("cannot open it: {e}")),
    };
    if info.link_type != BPF_LINK_TYPE_XDP {
        return PinStatus::Stale(format!("not an XDP link (link type {})", info.link_type));
    }
    match sys::if_index(&pin.iface) {
        _ if info.ifindex == 0 => PinStatus::Stale("the link is defunct".into()),
        Some(index) if index == info.ifindex => PinStatus::Attached(info),
        Some(_) => PinStatus::Stale(format!(
            "{} was recreated since the link was made",
            pin.iface
        )),
        None => PinStatus::Stale(format!("there is no interface {}", pin.iface)),
    }
}

/// A link taken off its interface by [`detach_pinned`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detached {
    pub pin: LinkPin,
    /// The link as it was (`None`: its pin could not be opened; it was removed anyway).
    pub info: Option<LinkInfo>,
}

/// Detaches `pin`'s link from its interface now (also while a daemon still holds it open)
/// and removes the pin. The program stops answering at once.
pub fn detach(pin: &LinkPin) -> Result<Detached, DatapathError> {
    let info = match sys::obj_get(&pin.path) {
        Ok(fd) => {
            let info = sys::link_info(&fd).ok();
            // A defunct link (its interface went away) is already detached.
            if info.is_some_and(|i| i.ifindex != 0) {
                sys::link_detach(&fd).map_err(DatapathError::io(format!(
                    "detaching the XDP link pinned at {}",
                    pin.path.display()
                )))?;
            }
            info
        }
        Err(_) => None,
    };
    fs::remove_file(&pin.path).map_err(DatapathError::io(format!(
        "removing the link pin {}",
        pin.path.display()
    )))?;
    Ok(Detached {
        pin: pin.clone(),
        info,
    })
}

/// Detaches every pinned link in `dir` ([`detach`]); the maps stay pinned.
pub fn detach_pinned(dir: &Path) -> Result<Vec<Detached>, DatapathError> {
    pinned_links(dir).iter().map(detach).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_carry_interface_and_mode() {
        assert_eq!(pin_name("eth0", XdpMode::Driver), "link_native_eth0");
        assert_eq!(pin_name("lo", XdpMode::Skb), "link_generic_lo");
        // bpffs refuses dots in names.
        assert_eq!(
            pin_name("eth0.100", XdpMode::Skb),
            "link_generic_eth0%2e100"
        );
        for (iface, mode) in [
            ("eth0", XdpMode::Driver),
            ("eth0.100", XdpMode::Skb),
            ("veth_a.b%2e", XdpMode::Driver),
        ] {
            assert_eq!(
                parse_pin_name(&pin_name(iface, mode)),
                Some((iface.to_string(), mode))
            );
        }
        for other in [
            "HOT_NAMES",
            "link_native",
            "link_native_",
            "link_fast_eth0",
            "staging-1",
        ] {
            assert_eq!(parse_pin_name(other), None, "{other}");
        }
    }
}
