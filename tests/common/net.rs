//! Client sockets as a LAN would open them: from a chosen loopback address (all of 127/8
//! is local on Linux, so a flood or a soak comes from many clients, as phones on a LAN),
//! and optionally with a small receive buffer set before connecting, so a client that
//! stops reading closes its TCP window at once. Shared by tests/ and benches/soak.rs.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

/// A TCP connection to `to` (IPv4) from 127.0.0.`host`; with `small_window`, a 4 KiB
/// receive buffer.
pub fn connect_from(host: u8, to: SocketAddr, small_window: bool) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(v4) = to else {
        return Err(std::io::Error::other("an IPv4 address"));
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (from, dest) = (
        sockaddr(Ipv4Addr::new(127, 0, 0, host), 0),
        sockaddr(*v4.ip(), v4.port()),
    );
    // SAFETY: plain socket calls on a descriptor that TcpStream owns from its creation
    // (closed on every error path); the sockaddr structs outlive the calls reading them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        if small_window {
            let size: libc::c_int = 4096;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        if libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&dest as *const libc::sockaddr_in).cast(), len) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}
