//! A TCP proxy in front of a service, whose connections a test cuts at
//! once: the streams on them fail as they do when the network fails or
//! the peer is killed, with no orderly end from the server.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    open: bool,
    connections: JoinSet<()>,
    /// When each connection was accepted, cut or not.
    accepted: Vec<Instant>,
}

impl Proxy {
    /// Listens on a port of its own and forwards each connection to `target`.
    pub async fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            open: true,
            connections: JoinSet::new(),
            accepted: Vec::new(),
        }));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = shared.lock().unwrap();
                state.accepted.push(Instant::now());
                // While cut, a connection is accepted and closed at once.
                if state.open {
                    state.connections.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// Closes every open connection, and each new one, until [`Proxy::mend`].
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.open = false;
        state.connections.abort_all();
    }

    pub fn mend(&self) {
        self.state.lock().unwrap().open = true;
    }

    /// When each connection since `since` was accepted.
    pub fn connections_after(&self, since: Instant) -> Vec<Instant> {
        let state = self.state.lock().unwrap();
        state
            .accepted
            .iter()
            .copied()
            .filter(|&at| at > since)
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
