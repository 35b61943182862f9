//! Batched UDP I/O for the workers: `recvmmsg` and `sendmmsg` with packet information
//! (`IP_PKTINFO`, `IPV6_RECVPKTINFO`), so one system call moves up to [`BATCH`]
//! datagrams, each with the address it was sent to and the interface it arrived on, and
//! a reply to a socket bound to a wildcard address leaves from the address its query
//! came to. The buffers are allocated once per worker. The only `unsafe` code of the UDP
//! server is here.

use std::{
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::RawFd,
    ptr,
};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Receive buffer per datagram: the largest UDP payload.
pub const MAX_DATAGRAM: usize = 65_535;
/// Send buffer per datagram: the largest UDP reply we send (`edns_udp_size` at most 4096).
pub const MAX_REPLY: usize = 4096;

/// Room for one packet-information control message (`CMSG_SPACE(sizeof in6_pktinfo)` is
/// 40 octets on Linux).
const CONTROL_LEN: usize = 64;

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; CONTROL_LEN]);

/// Sets an integer socket option.
fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is an int that outlives the call, its size is given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SO_REUSEPORT`: several sockets (one per worker) bound to the same address, the kernel
/// spreading datagrams over them by a hash of the addresses and ports.
pub fn set_reuse_port(fd: RawFd) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
}

/// Asks for the destination address and arrival interface of each datagram.
pub fn set_packet_info(fd: RawFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// One received datagram.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    pub peer: SocketAddr,
    /// The address it was sent to.
    pub dst: Option<IpAddr>,
    /// The interface it arrived on.
    pub ifindex: Option<u32>,
    /// It was longer than [`MAX_DATAGRAM`] (cannot happen over IPv4/IPv6 UDP).
    pub cut: bool,
}

/// The receive side of a worker.
pub struct Receiver {
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[Control]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    received: Vec<Received>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    pub fn new() -> Self {
        Self {
            bufs: vec![0u8; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr (null pointers,
            // zero lengths).
            names: vec![unsafe { mem::zeroed() }; BATCH].into_boxed_slice(),
            controls: vec![Control([0; CONTROL_LEN]); BATCH].into_boxed_slice(),
            iovs: vec![unsafe { mem::zeroed() }; BATCH].into_boxed_slice(),
            hdrs: vec![unsafe { mem::zeroed() }; BATCH].into_boxed_slice(),
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Waits for at least one datagram (up to the socket's receive timeout) and takes every
    /// datagram already queued, up to [`BATCH`]. Returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.controls[i].0.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CONTROL_LEN as _;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at buffers of this receiver with their true lengths;
        // they stay alive and unaliased for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        self.received.clear();
        for i in 0..n {
            let h = &self.hdrs[i];
            // SAFETY: the kernel wrote a sockaddr of the family it names.
            let peer = unsafe { socket_addr(&self.names[i]) };
            // SAFETY: the header's control buffer holds what the kernel wrote, with its length.
            let (dst, ifindex) = unsafe { packet_info(&h.msg_hdr) };
            let peer = peer.unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
            self.received.push(Received {
                len: (h.msg_len as usize).min(MAX_DATAGRAM),
                peer,
                dst,
                ifindex,
                cut: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            });
        }
        Ok(n)
    }

    /// The datagrams of the last [`recv`](Self::recv).
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// Datagram `i` of the last receive.
    pub fn datagram(&self, i: usize) -> &[u8] {
        let len = self.received.get(i).map_or(0, |r| r.len);
        &self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len]
    }
}

/// The send side of a worker: replies queued, then sent in one call.
pub struct Sender {
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    names: Box<[libc::sockaddr_storage]>,
    name_lens: [libc::socklen_t; BATCH],
    controls: Box<[Control]>,
    control_lens: [usize; BATCH],
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    queued: usize,
}

impl Default for Sender {
    fn default() -> Self {
        Self::new()
    }
}

impl Sender {
    pub fn new() -> Self {
        Self {
            bufs: vec![0u8; BATCH * MAX_REPLY].into_boxed_slice(),
            lens: [0; BATCH],
            // SAFETY: as in `Receiver::new`.
            names: vec![unsafe { mem::zeroed() }; BATCH].into_boxed_slice(),
            name_lens: [0; BATCH],
            controls: vec![Control([0; CONTROL_LEN]); BATCH].into_boxed_slice(),
            control_lens: [0; BATCH],
            iovs: vec![unsafe { mem::zeroed() }; BATCH].into_boxed_slice(),
            hdrs: vec![unsafe { mem::zeroed() }; BATCH].into_boxed_slice(),
            queued: 0,
        }
    }

    /// The buffer of the next reply (None when [`BATCH`] replies are queued).
    pub fn buffer(&mut self) -> Option<&mut [u8]> {
        let i = self.queued;
        (i < BATCH).then(|| &mut self.bufs[i * MAX_REPLY..(i + 1) * MAX_REPLY])
    }

    /// Queues the first `len` octets of the [`buffer`](Self::buffer) for `peer`, sent from
    /// `src` (with its interface for link-local addresses) when given.
    pub fn queue(&mut self, len: usize, peer: SocketAddr, src: Option<(IpAddr, u32)>) {
        let i = self.queued;
        if i >= BATCH {
            return;
        }
        self.lens[i] = len.min(MAX_REPLY);
        self.name_lens[i] = write_socket_addr(&mut self.names[i], peer);
        self.control_lens[i] = match src {
            Some((ip, ifindex)) => write_packet_info(&mut self.controls[i], ip, ifindex),
            None => 0,
        };
        self.queued += 1;
    }

    /// Sends what is queued. Returns how many could not be sent (each is tried once).
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let n = self.queued;
        self.queued = 0;
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * MAX_REPLY..].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = self.name_lens[i];
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = if self.control_lens[i] == 0 {
                ptr::null_mut()
            } else {
                self.controls[i].0.as_mut_ptr().cast()
            };
            h.msg_hdr.msg_controllen = self.control_lens[i] as _;
            h.msg_hdr.msg_flags = 0;
        }
        let mut at = 0;
        let mut failed = 0;
        while at < n {
            // SAFETY: headers `at..n` point at this sender's buffers with their lengths.
            let sent =
                unsafe { libc::sendmmsg(fd, self.hdrs[at..].as_mut_ptr(), (n - at) as u32, 0) };
            if sent > 0 {
                at += sent as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first message failed (e.g. no route, a full buffer): skip it.
            tracing::trace!("udp send: {e}");
            failed += 1;
            at += 1;
        }
        failed
    }
}

/// The address in a `sockaddr_storage`.
///
/// # Safety
/// `ss` holds a sockaddr of the family in its `ss_family` (or AF_UNSPEC).
unsafe fn socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let sa = (ss as *const libc::sockaddr_storage).cast::<u8>();
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in; storage is large enough.
            let sin = unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in>()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let sin6 = unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in6>()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `ss`; returns its length.
fn write_socket_addr(ss: &mut libc::sockaddr_storage, addr: SocketAddr) -> libc::socklen_t {
    let out = (ss as *mut libc::sockaddr_storage).cast::<u8>();
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { ptr::write_unaligned(out.cast::<libc::sockaddr_in>(), sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { ptr::write_unaligned(out.cast::<libc::sockaddr_in6>(), sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The destination address and interface from a received message's control data.
///
/// # Safety
/// `h.msg_control` points at `h.msg_controllen` octets of control data the kernel wrote.
unsafe fn packet_info(h: &libc::msghdr) -> (Option<IpAddr>, Option<u32>) {
    // SAFETY: per the contract; the CMSG macros stay inside msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(h);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_PKTINFO {
                let info = ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                let dst = Ipv4Addr::from(info.ipi_addr.s_addr.to_ne_bytes());
                return (Some(IpAddr::V4(dst)), u32::try_from(info.ipi_ifindex).ok());
            }
            if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                let info = ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                let dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                return (Some(IpAddr::V6(dst)), Some(info.ipi6_ifindex));
            }
            cmsg = libc::CMSG_NXTHDR(h, cmsg);
        }
    }
    (None, None)
}

/// Writes a packet-information message choosing the source address `src` of a reply (and
/// the interface `ifindex` for an IPv6 link-local source); returns the control length.
fn write_packet_info(control: &mut Control, src: IpAddr, ifindex: u32) -> usize {
    control.0.fill(0);
    // SAFETY: all-zero is a valid msghdr; only its control fields are used, to let the CMSG
    // macros find the first header inside `control`.
    let mut h: libc::msghdr = unsafe { mem::zeroed() };
    h.msg_control = control.0.as_mut_ptr().cast();
    h.msg_controllen = CONTROL_LEN as _;
    // SAFETY: `control` is CONTROL_LEN octets, aligned for cmsghdr, larger than the
    // CMSG_SPACE of either payload; the writes stay inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&h);
        if cmsg.is_null() {
            return 0;
        }
        match src {
            IpAddr::V4(a) => {
                let size = mem::size_of::<libc::in_pktinfo>() as u32;
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
                let mut info: libc::in_pktinfo = mem::zeroed();
                info.ipi_spec_dst.s_addr = u32::from_ne_bytes(a.octets());
                ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in_pktinfo>(), info);
                libc::CMSG_SPACE(size) as usize
            }
            IpAddr::V6(a) => {
                let size = mem::size_of::<libc::in6_pktinfo>() as u32;
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
                let mut info: libc::in6_pktinfo = mem::zeroed();
                info.ipi6_addr.s6_addr = a.octets();
                // Only a link-local source needs its interface; others leave by the route.
                if a.is_unicast_link_local() {
                    info.ipi6_ifindex = ifindex;
                }
                ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>(), info);
                libc::CMSG_SPACE(size) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsRawFd as _, time::Duration};

    use super::*;

    #[test]
    fn a_batch_round_trip_with_packet_info() {
        let server = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        set_packet_info(server.as_raw_fd(), false).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for i in 0..5u8 {
            client
                .send_to(&[i; 20], (Ipv4Addr::LOCALHOST, port))
                .unwrap();
        }
        let mut rx = Receiver::new();
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = rx.recv(server.as_raw_fd()).unwrap();
            for i in 0..n {
                let r = rx.received()[i];
                assert_eq!(r.peer, client.local_addr().unwrap());
                assert_eq!(r.dst, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                assert!(r.ifindex.is_some_and(|i| i > 0));
                assert!(!r.cut);
                got.push(rx.datagram(i).to_vec());
            }
        }
        assert_eq!(got, (0..5u8).map(|i| vec![i; 20]).collect::<Vec<_>>());

        // Replies from the address the queries came to (the socket is bound to 0.0.0.0).
        let mut tx = Sender::new();
        for i in 0..3u8 {
            let buf = tx.buffer().unwrap();
            buf[..4].copy_from_slice(&[i, i, i, i]);
            tx.queue(
                4,
                client.local_addr().unwrap(),
                Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
            );
        }
        assert_eq!(tx.flush(server.as_raw_fd()), 0);
        let mut buf = [0u8; 16];
        for i in 0..3u8 {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 4]);
            assert_eq!(from, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
    }

    #[test]
    fn ipv6_packet_info() {
        let Ok(server) = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)) else {
            eprintln!("skipping: no IPv6 on this machine");
            return;
        };
        set_packet_info(server.as_raw_fd(), true).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let client = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        client
            .send_to(b"hello", (Ipv6Addr::LOCALHOST, port))
            .unwrap();
        let mut rx = Receiver::new();
        assert_eq!(rx.recv(server.as_raw_fd()).unwrap(), 1);
        let r = rx.received()[0];
        assert_eq!(r.dst, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(rx.datagram(0), b"hello");
        let mut tx = Sender::new();
        tx.buffer().unwrap()[..2].copy_from_slice(b"ok");
        tx.queue(
            2,
            r.peer,
            Some((IpAddr::V6(Ipv6Addr::LOCALHOST), r.ifindex.unwrap())),
        );
        assert_eq!(tx.flush(server.as_raw_fd()), 0);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ok");
        assert_eq!(from.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
}
