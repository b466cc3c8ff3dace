//! The network validator (CNI mode, §5.4): listens where the outbound redirect sends traffic,
//! connects to an address outside the pod, and expects to reach itself. Anything else means the
//! pod's traffic would bypass the proxy.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;

/// The exit code that tells the CNI repair controller the redirect is missing.
pub const FAILURE_EXIT_CODE: i32 = 95;

#[derive(Debug, Clone)]
pub struct Validator {
    pub connect_addr: SocketAddr,
    pub listen_addr: SocketAddr,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot connect to {addr}: {source} (is the iptables redirect in place?)")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("connected to {addr}, but the token read back was not ours: traffic is not redirected to {listen}")]
    WrongPeer { addr: SocketAddr, listen: SocketAddr },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Validator {
    pub fn run(&self) -> Result<(), ValidationError> {
        let deadline = Instant::now() + self.timeout;
        let remaining = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
        let listener = TcpListener::bind(self.listen_addr)
            .map_err(|source| ValidationError::Listen { addr: self.listen_addr, source })?;
        let token: String = rand::rng().sample_iter(&Alphanumeric).take(63).map(char::from).collect();
        let served = token.clone();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = writeln!(stream, "{served}");
            }
        });
        let timeout = remaining().ok_or(ValidationError::Timeout(self.timeout))?;
        let stream = TcpStream::connect_timeout(&self.connect_addr, timeout)
            .map_err(|source| ValidationError::Connect { addr: self.connect_addr, source })?;
        stream.set_read_timeout(Some(remaining().ok_or(ValidationError::Timeout(self.timeout))?))?;
        let mut line = String::new();
        match BufReader::new(stream).read_line(&mut line) {
            Ok(_) if line.trim_end() == token => Ok(()),
            Ok(_) => Err(ValidationError::WrongPeer { addr: self.connect_addr, listen: self.listen_addr }),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(ValidationError::Timeout(self.timeout))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn succeeds_when_the_connection_reaches_itself() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let validator = Validator { connect_addr: addr, listen_addr: addr, timeout: Duration::from_secs(5) };
        validator.run().unwrap();
    }

    #[test]
    fn fails_when_something_else_answers() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let other_addr = other.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = other.accept().unwrap();
            writeln!(stream, "not-the-token").unwrap();
        });
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let validator = Validator { connect_addr: other_addr, listen_addr: listen, timeout: Duration::from_secs(5) };
        assert!(matches!(validator.run(), Err(ValidationError::WrongPeer { .. })));
        let closed: SocketAddr =
            format!("127.0.0.1:{}", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
                .parse()
                .unwrap();
        let validator = Validator { connect_addr: closed, listen_addr: listen, timeout: Duration::from_secs(5) };
        assert!(matches!(validator.run(), Err(ValidationError::Connect { .. })));
    }
}
