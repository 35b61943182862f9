//! What the XDP program did with a packet: one per-CPU counter per outcome.

use crate::accept::Reject;

macro_rules! outcomes {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Every way a packet leaves the XDP program. The discriminant indexes the stats map.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Outcome {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Outcome {
            /// All outcomes, in discriminant order.
            pub const ALL: &'static [Outcome] = &[$(Outcome::$variant,)*];

            /// Stable lower-case name, used as the Prometheus `outcome` label.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Outcome::$variant => $name,)*
                }
            }
        }
    };
}

outcomes! {
    /// Answered with `XDP_TX`; the frame's tail grew (or shrank) to fit the reply.
    Hit = "hit",
    /// Answered with `XDP_TX`; the reply grew into the frame's headroom because the driver
    /// left no room at its tail (the headers were moved forward).
    HitHeadroom = "hit_headroom",
    /// Not IPv4/IPv6 (ARP, LLDP, ...), or a frame too short for its headers.
    NotIp = "not_ip",
    /// IPv4 with options or IPv6 with extension headers.
    IpOptions = "ip_options",
    /// An IPv4 fragment.
    Fragment = "fragment",
    /// Not UDP.
    NotUdp = "not_udp",
    /// UDP, but not to the DNS port.
    OtherPort = "other_port",
    /// To the DNS port but not to one of our addresses (or to multicast/broadcast).
    OtherAddress = "other_address",
    /// Length fields disagree with the frame, or the message is too short.
    Malformed = "malformed",
    /// Not a plain standard query: QR set, opcode other than QUERY, TC set, or section
    /// counts other than QD=1 AN=0 NS=0 AR<=1.
    NotQuery = "not_query",
    /// The question does not end where the message layout puts it: a truncated or
    /// compressed name, a name over 255 octets, or octets after the question.
    BadName = "bad_name",
    /// Query class other than IN.
    Qclass = "qclass",
    /// Query type other than A, AAAA, CNAME.
    Qtype = "qtype",
    /// The additional record is not a plain OPT: EDNS version other than 0, options
    /// (cookies, ECS, ...), a non-root owner, or anything that is not OPT.
    Edns = "edns",
    /// Not a hot name (or a hot name of another query type).
    Miss = "miss",
    /// The name's hash tag matched a hot name but the name itself did not.
    Collision = "collision",
    /// The pool has no answer published in the kernel (the daemon answers).
    NoAnswer = "no_answer",
    /// The response would not fit the client's UDP payload size, or our own
    /// (`edns_udp_size`): the smaller of the two ([`crate::size::max_reply`]).
    TooBig = "too_big",
    /// A hot query whose UDP checksum is wrong or missing over IPv6, or whose IPv4 header
    /// checksum is wrong (the stack drops it too).
    BadChecksum = "bad_checksum",
    /// The frame could grow neither at its tail nor into its headroom.
    GrowFailed = "grow_failed",
    /// The XDP path is disabled in the config map.
    Disabled = "disabled",
    /// Answered with `XDP_TX` although the daemon's heartbeat is older than the configured
    /// staleness (`on_stale = "serve"`): the last published answer, however the frame grew.
    StaleHit = "stale_hit",
    /// A hot query passed because the daemon's heartbeat is older than the configured
    /// staleness (`on_stale = "pass"`).
    Stale = "stale",
    /// Not addressed to the receiving interface's own MAC address: broadcast, multicast or
    /// another host's (the stack drops it, or it was flooded to us by a switch).
    ForeignMac = "foreign_mac",
    /// Source port 0 or a reflection port ([`Reject::SourcePort`]).
    SourcePort = "source_port",
    /// Source `0.0.0.0/8` or `::` ([`Reject::Unspecified`]).
    UnspecifiedSource = "unspecified_source",
    /// A multicast source ([`Reject::Multicast`]).
    MulticastSource = "multicast_source",
    /// A broadcast source: the limited broadcast or a subnet broadcast of this host
    /// ([`Reject::Broadcast`]).
    BroadcastSource = "broadcast_source",
    /// A loopback source on an interface other than loopback ([`Reject::Loopback`]).
    LoopbackSource = "loopback_source",
    /// One of this host's addresses as source, on an interface other than loopback
    /// ([`Reject::OwnAddress`]).
    OwnSource = "own_source",
    /// A hit over its client network's rate, dropped (`XDP_DROP`).
    RrlDropped = "rrl_dropped",
    /// A hit over its client network's rate, answered truncated (TC=1, no records) with
    /// `XDP_TX`: the slip.
    RrlSlipped = "rrl_slipped",
    /// Internal error after the frame was modified (a bug): `XDP_ABORTED`.
    Aborted = "aborted",
    /// Answered with `XDP_TX` by the subnet of the query's EDNS Client Subnet option
    /// (counted instead of `hit` and `hit_headroom`; a stale hit stays `stale_hit`).
    EcsHit = "ecs_hit",
    /// An ECS option with SOURCE PREFIX-LENGTH 0 ([`crate::ecs::Pass::SourceZero`]).
    EcsSourceZero = "ecs_source_zero",
    /// An ECS option with a SOURCE longer than /24 (IPv4) or /56 (IPv6).
    EcsLong = "ecs_long",
    /// An ECS option with a SCOPE PREFIX-LENGTH other than 0.
    EcsScope = "ecs_scope",
    /// An ECS option beside other options, or several ECS options.
    EcsOptions = "ecs_options",
    /// An invalid ECS option, answered FORMERR by the daemon ([`crate::ecs::FormErr`]).
    EcsInvalid = "ecs_invalid",
}

impl Outcome {
    /// Number of outcomes (size of the stats map).
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The outcome of a query the acceptance rules reject.
    pub const fn rejected(reason: Reject) -> Self {
        match reason {
            Reject::SourcePort => Outcome::SourcePort,
            Reject::Unspecified => Outcome::UnspecifiedSource,
            Reject::Multicast => Outcome::MulticastSource,
            Reject::Broadcast => Outcome::BroadcastSource,
            Reject::Loopback => Outcome::LoopbackSource,
            Reject::OwnAddress => Outcome::OwnSource,
        }
    }

    /// The packet was answered by the kernel (whichever way the frame grew, stale or not).
    pub const fn answered(self) -> bool {
        matches!(
            self,
            Outcome::Hit | Outcome::HitHeadroom | Outcome::StaleHit | Outcome::EcsHit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminants_are_dense_and_names_unique() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as u32, i as u32);
            for other in &Outcome::ALL[i + 1..] {
                assert_ne!(o.name(), other.name());
            }
        }
        assert_eq!(Outcome::COUNT as usize, Outcome::ALL.len());
    }

    #[test]
    fn every_hit_is_an_answer() {
        assert!(Outcome::Hit.answered());
        assert!(Outcome::HitHeadroom.answered());
        assert!(Outcome::StaleHit.answered());
        assert!(!Outcome::Stale.answered());
        assert!(!Outcome::Miss.answered());
        assert!(!Outcome::GrowFailed.answered());
        assert!(!Outcome::RrlSlipped.answered(), "a slip carries no answer");
        assert!(!Outcome::RrlDropped.answered());
    }

    #[test]
    fn every_reject_has_its_own_outcome() {
        for (i, r) in Reject::ALL.iter().enumerate() {
            let o = Outcome::rejected(*r);
            assert!(!o.answered());
            for other in &Reject::ALL[i + 1..] {
                assert_ne!(o, Outcome::rejected(*other), "{r:?} {other:?}");
            }
        }
        assert_eq!(Outcome::rejected(Reject::SourcePort).name(), "source_port");
    }
}
