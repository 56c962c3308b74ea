//! Batched UDP for the engine threads: one `recvmmsg` takes every datagram waiting on a socket,
//! one `sendmmsg` hands a slot's datagrams to the kernel.
//!
//! Built on nix's safe wrappers rather than quinn-udp: quinn-udp batches only datagrams to one
//! destination (GSO), while a media slot sends to as many destinations as it has calls. Each
//! received datagram comes with the address it was sent to (`IP_PKTINFO`), so one wildcard socket
//! serves every host candidate, and with the kernel's receive time (`SO_TIMESTAMPNS`), so arrival
//! statistics say when a packet reached the machine, not when the engine got round to it.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6,
    SockaddrStorage, recvmmsg, sendmmsg, setsockopt, sockopt,
};

/// Larger datagrams are not media (RTP, RTCP, STUN and DTLS stay under the path MTU); they are
/// dropped as truncated.
const MAX_DATAGRAM: usize = 2048;
/// Datagrams per system call, both ways.
pub const BATCH: usize = 64;
/// Kernel buffers: a slot's worth of packets for a few thousand calls.
const SOCKET_BUFFER: usize = 4 << 20;

/// A datagram that arrived.
#[derive(Debug)]
pub struct Received {
    pub from: SocketAddr,
    /// The local address it was sent to (the socket's port, the destination IP).
    pub to: SocketAddr,
    /// When the kernel received it.
    pub at: Instant,
    pub data: BytesMut,
}

/// A datagram to send: from `from` (which picks the source IP) to `to`.
#[derive(Debug)]
pub struct Outgoing {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: BytesMut,
}

/// Binds a non-blocking UDP socket that reports destination addresses and receive times.
pub fn bind(address: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(address)?;
    socket.set_nonblocking(true)?;
    let fd = &socket;
    let option = |result: nix::Result<()>| result.map_err(io::Error::from);
    match address {
        SocketAddr::V4(_) => option(setsockopt(fd, sockopt::Ipv4PacketInfo, &true))?,
        SocketAddr::V6(_) => option(setsockopt(fd, sockopt::Ipv6RecvPacketInfo, &true))?,
    }
    option(setsockopt(fd, sockopt::ReceiveTimestampns, &true))?;
    // Best effort: the kernel caps these at its own limits.
    let _ = setsockopt(fd, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(fd, sockopt::SndBuf, &SOCKET_BUFFER);
    Ok(socket)
}

/// Binds an IPv6 socket that does not also take IPv4 (that is the IPv4 socket's job).
pub fn bind_v6_only(port: u16) -> io::Result<UdpSocket> {
    let socket = socket_v6_only(port)?;
    socket.set_nonblocking(true)?;
    setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
    let _ = setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(&socket, sockopt::SndBuf, &SOCKET_BUFFER);
    Ok(socket)
}

fn socket_v6_only(port: u16) -> io::Result<UdpSocket> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, bind, socket};
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(io::Error::from)?;
    let address = SockaddrIn6::from(std::net::SocketAddrV6::new(
        Ipv6Addr::UNSPECIFIED,
        port,
        0,
        0,
    ));
    bind(fd.as_raw_fd(), &address).map_err(io::Error::from)?;
    Ok(UdpSocket::from(fd))
}

/// The buffers one engine thread receives into, reused for every socket it reads.
pub struct Receiver {
    headers: MultiHeaders<SockaddrStorage>,
    buffers: Vec<Vec<u8>>,
}

impl Default for Receiver {
    fn default() -> Self {
        let control = nix::cmsg_space!(libc::in6_pktinfo, nix::sys::time::TimeSpec);
        Self {
            headers: MultiHeaders::preallocate(BATCH, Some(control)),
            buffers: (0..BATCH).map(|_| vec![0; MAX_DATAGRAM]).collect(),
        }
    }
}

impl Receiver {
    /// Reads up to [`BATCH`] datagrams waiting on `socket` (whose local port is `port`) into
    /// `out`; returns how many were read, 0 when none was waiting.
    pub fn receive(
        &mut self,
        socket: &UdpSocket,
        port: u16,
        out: &mut Vec<Received>,
    ) -> io::Result<usize> {
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffers
            .iter_mut()
            .map(|buffer| [IoSliceMut::new(buffer)])
            .collect();
        let results = match recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(results) => results,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        // The monotonic clock and the wall clock now, to turn kernel (wall clock) receive times
        // into instants.
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut count = 0;
        for message in results {
            count += 1;
            if message.flags.contains(MsgFlags::MSG_TRUNC) {
                continue;
            }
            let Some(from) = message.address.as_ref().and_then(socket_address) else {
                continue;
            };
            let mut to_ip = None;
            let mut at = now;
            if let Ok(cmsgs) = message.cmsgs() {
                for cmsg in cmsgs {
                    match cmsg {
                        ControlMessageOwned::Ipv4PacketInfo(info) => {
                            to_ip = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                                info.ipi_addr.s_addr,
                            ))));
                        }
                        ControlMessageOwned::Ipv6PacketInfo(info) => {
                            to_ip = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                        }
                        ControlMessageOwned::ScmTimestampns(time) => {
                            let stamp = UNIX_EPOCH
                                + Duration::new(time.tv_sec() as u64, time.tv_nsec() as u32);
                            at = now
                                .checked_sub(wall.duration_since(stamp).unwrap_or_default())
                                .unwrap_or(now);
                        }
                        _ => {}
                    }
                }
            }
            let Some(to_ip) = to_ip else {
                continue;
            };
            let mut data = BytesMut::with_capacity(message.bytes);
            for slice in message.iovs() {
                data.extend_from_slice(slice);
            }
            out.push(Received {
                from,
                to: SocketAddr::new(to_ip, port),
                at,
                data,
            });
        }
        Ok(count)
    }
}

fn socket_address(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
}

/// Sends datagrams of one socket in as few `sendmmsg` calls as their source IPs allow.
pub struct Sender {
    /// With room for the source address (`IP_PKTINFO`); nix sends the whole control buffer, so
    /// datagrams without a source (left to routing) go through headers without one.
    v4: MultiHeaders<SockaddrIn>,
    v4_routed: MultiHeaders<SockaddrIn>,
    v6: MultiHeaders<SockaddrIn6>,
    v6_routed: MultiHeaders<SockaddrIn6>,
}

impl Default for Sender {
    fn default() -> Self {
        Self {
            v4: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in_pktinfo))),
            v4_routed: MultiHeaders::preallocate(BATCH, None),
            v6: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo))),
            v6_routed: MultiHeaders::preallocate(BATCH, None),
        }
    }
}

/// What a send achieved: datagrams handed to the kernel, and those it refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: usize,
    pub failed: usize,
}

impl Sender {
    /// Sends `batch` (all of the same address family as `socket`) and empties it. Datagrams the
    /// kernel refuses (a full buffer, an unreachable destination) are counted and dropped: media
    /// is never worth waiting for.
    pub fn send(&mut self, socket: &UdpSocket, batch: &mut Vec<Outgoing>) -> Sent {
        let mut result = Sent::default();
        // Consecutive datagrams from one source IP share a call (the source is one control
        // message for the whole call).
        let mut start = 0;
        while start < batch.len() {
            let source = batch[start].from.ip();
            let end = batch[start..]
                .iter()
                .take(BATCH)
                .position(|d| d.from.ip() != source)
                .map_or((start + BATCH).min(batch.len()), |n| start + n);
            let group = &batch[start..end];
            let sent = match source {
                IpAddr::V4(ip) => self.send_v4(socket, ip, group),
                IpAddr::V6(ip) => self.send_v6(socket, ip, group),
            };
            match sent {
                Ok(0) | Err(_) => {
                    // The first datagram of the group is refused: skip it and go on.
                    tracing::trace!(to = %batch[start].to, "datagram refused: {sent:?}");
                    result.failed += 1;
                    start += 1;
                }
                Ok(n) => {
                    result.sent += n;
                    start += n;
                }
            }
        }
        batch.clear();
        result
    }

    fn send_v4(
        &mut self,
        socket: &UdpSocket,
        source: Ipv4Addr,
        group: &[Outgoing],
    ) -> nix::Result<usize> {
        let addresses: Vec<Option<SockaddrIn>> = group
            .iter()
            .map(|d| match d.to {
                SocketAddr::V4(to) => Some(SockaddrIn::from(to)),
                SocketAddr::V6(_) => None,
            })
            .collect();
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(source).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let (headers, control) = if source.is_unspecified() {
            (&mut self.v4_routed, None)
        } else {
            (&mut self.v4, Some(ControlMessage::Ipv4PacketInfo(&info)))
        };
        send_group(socket, headers, group, &addresses, control)
    }

    fn send_v6(
        &mut self,
        socket: &UdpSocket,
        source: Ipv6Addr,
        group: &[Outgoing],
    ) -> nix::Result<usize> {
        let addresses: Vec<Option<SockaddrIn6>> = group
            .iter()
            .map(|d| match d.to {
                SocketAddr::V6(to) => Some(SockaddrIn6::from(to)),
                SocketAddr::V4(_) => None,
            })
            .collect();
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: source.octets(),
            },
            ipi6_ifindex: 0,
        };
        let (headers, control) = if source.is_unspecified() {
            (&mut self.v6_routed, None)
        } else {
            (&mut self.v6, Some(ControlMessage::Ipv6PacketInfo(&info)))
        };
        send_group(socket, headers, group, &addresses, control)
    }
}

/// One `sendmmsg` of `group` to `addresses`, all with `control` (if any).
fn send_group<S: nix::sys::socket::SockaddrLike + Copy>(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<S>,
    group: &[Outgoing],
    addresses: &[Option<S>],
    control: Option<ControlMessage<'_>>,
) -> nix::Result<usize> {
    let slices: Vec<[IoSlice<'_>; 1]> = group.iter().map(|d| [IoSlice::new(&d.data)]).collect();
    let control: Vec<ControlMessage<'_>> = control.into_iter().collect();
    let results = sendmmsg(
        socket.as_raw_fd(),
        headers,
        slices.iter(),
        addresses,
        control,
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(results.count())
}

/// The port a socket is bound to.
pub fn port(socket: &UdpSocket) -> io::Result<u16> {
    Ok(socket.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(receiver: &mut Receiver, socket: &UdpSocket, count: usize) -> Vec<Received> {
        let port = port(socket).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.len() < count && Instant::now() < deadline {
            if receiver.receive(socket, port, &mut out).unwrap() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        out
    }

    #[test]
    fn a_batch_goes_out_in_order_and_comes_back_with_addresses_and_times() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let a_addr = a.local_addr().unwrap();
        let b_addr: SocketAddr = format!("127.0.0.1:{}", port(&b).unwrap()).parse().unwrap();
        let mut batch: Vec<Outgoing> = (0..100u8)
            .map(|i| Outgoing {
                from: a_addr,
                to: b_addr,
                data: BytesMut::from(&[i; 100][..]),
            })
            .collect();
        let before = Instant::now();
        let sent = Sender::default().send(&a, &mut batch);
        assert_eq!(
            sent,
            Sent {
                sent: 100,
                failed: 0
            }
        );
        assert!(batch.is_empty());
        let got = wait_for(&mut Receiver::default(), &b, 100);
        assert_eq!(got.len(), 100);
        for (i, datagram) in got.iter().enumerate() {
            assert_eq!(datagram.from, a_addr);
            assert_eq!(
                datagram.to, b_addr,
                "the wildcard socket learns the destination IP"
            );
            assert_eq!(&datagram.data[..], &[i as u8; 100][..]);
            assert!(datagram.at + Duration::from_millis(5) >= before);
            assert!(datagram.at <= Instant::now());
        }
    }

    #[test]
    fn a_refused_datagram_does_not_stop_the_rest() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let a_addr = a.local_addr().unwrap();
        let b_addr = b.local_addr().unwrap();
        let mut batch = vec![
            Outgoing {
                from: a_addr,
                to: b_addr,
                data: BytesMut::from(&b"one"[..]),
            },
            // Too large for UDP: the kernel refuses it.
            Outgoing {
                from: a_addr,
                to: b_addr,
                data: BytesMut::from(&vec![0u8; 70_000][..]),
            },
            Outgoing {
                from: a_addr,
                to: b_addr,
                data: BytesMut::from(&b"three"[..]),
            },
        ];
        let sent = Sender::default().send(&a, &mut batch);
        assert_eq!(sent, Sent { sent: 2, failed: 1 });
        let got = wait_for(&mut Receiver::default(), &b, 2);
        let texts: Vec<&[u8]> = got.iter().map(|d| &d.data[..]).collect();
        assert_eq!(texts, [&b"one"[..], &b"three"[..]]);
    }

    #[test]
    fn a_datagram_without_a_source_is_sent_too() {
        let a = bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port_a = port(&a).unwrap();
        let mut batch = vec![Outgoing {
            from: SocketAddr::from(([0, 0, 0, 0], port_a)),
            to: b.local_addr().unwrap(),
            data: BytesMut::from(&b"routed"[..]),
        }];
        // A fresh sender: its headers never held a source address.
        assert_eq!(Sender::default().send(&a, &mut batch).sent, 1);
        let got = wait_for(&mut Receiver::default(), &b, 1);
        assert_eq!(&got[0].data[..], b"routed");
        assert_eq!(got[0].from.port(), port_a);
    }

    #[test]
    fn nothing_waiting_reads_nothing() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            Receiver::default()
                .receive(&a, port(&a).unwrap(), &mut out)
                .unwrap(),
            0
        );
        assert!(out.is_empty());
    }
}
