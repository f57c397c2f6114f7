//! Name lookups for upstreams, cached and one at a time.
//!
//! A lookup (`getaddrinfo`) blocks, so tokio runs each on a blocking-pool thread. Without a
//! cache, every new connection to a named upstream makes one. With 1,024 shadows to a +200 ms
//! candidate at 6,500 rps (`benches/named.sh`), upstreams given as `localhost` took the proxy to
//! 188 threads, 62.7 MiB peak RSS and a client p99 of 132 ms, against 4 threads, 29.7 MiB and
//! 9.4 ms given as `127.0.0.1`; and every new client connection put a lookup in front of its
//! first request to the primary. Here a name is
//! looked up at most once per TTL, and while it is being looked up, everyone who needs it waits
//! for that one lookup. A failure is kept for the TTL too, so a name that does not resolve costs
//! one lookup per TTL, not one per request.
//!
//! [`Resolver`] serves the shadow client directly and hyper's connector (to the primary) through
//! [`HyperResolver`].

use hyper_util::client::legacy::connect::dns::Name;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long a name's addresses are used before it is looked up again. Short, so a candidate
/// that moves is followed within seconds; long enough that lookups never matter for load.
pub const DNS_TTL: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Resolver {
    ttl: Duration,
    cache: tokio::sync::Mutex<HashMap<String, Lookup>>,
    lookups: AtomicU64,
}

#[derive(Debug)]
struct Lookup {
    at: Instant,
    result: Result<Vec<IpAddr>, String>,
}

impl Resolver {
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            cache: tokio::sync::Mutex::new(HashMap::new()),
            lookups: AtomicU64::new(0),
        })
    }

    /// Lookups made so far (addresses written as such are never looked up).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// The addresses of `host` (a name, or an address as text), or why there are none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        // Held across the lookup: that is what makes it one lookup for everyone waiting.
        let mut cache = self.cache.lock().await;
        if let Some(l) = cache.get(host).filter(|l| l.at.elapsed() < self.ttl) {
            return l.result.clone();
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::net::lookup_host((host, 0)).await {
            Ok(addrs) => {
                let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                if ips.is_empty() {
                    Err(format!("{host} has no address"))
                } else {
                    Ok(ips)
                }
            }
            Err(e) => Err(format!("cannot resolve {host}: {e}")),
        };
        cache.insert(
            host.to_string(),
            Lookup {
                at: Instant::now(),
                result: result.clone(),
            },
        );
        result
    }
}

/// [`Resolver`] as hyper's connector wants it (addresses with port 0: the connector sets the
/// URI's port).
#[derive(Debug, Clone)]
pub struct HyperResolver(pub Arc<Resolver>);

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for HyperResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.0.clone();
        Box::pin(async move {
            let ips = resolver
                .addresses(name.as_str())
                .await
                .map_err(std::io::Error::other)?;
            Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
                .into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    #[tokio::test]
    async fn a_burst_makes_one_lookup_per_ttl_and_addresses_none() {
        let r = Resolver::new(Duration::from_secs(60));
        let all = futures_util::future::join_all((0..20).map(|_| r.addresses("localhost"))).await;
        assert!(
            all.iter().all(|a| a.as_ref().is_ok_and(|a| !a.is_empty())),
            "{all:?}"
        );
        assert_eq!(r.lookups(), 1);
        assert_eq!(
            r.addresses("127.0.0.1").await.unwrap(),
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(r.addresses("::1").await.unwrap().len(), 1);
        assert_eq!(r.lookups(), 1, "addresses are not looked up");

        let r = Resolver::new(Duration::ZERO);
        for _ in 0..3 {
            r.addresses("localhost").await.unwrap();
        }
        assert_eq!(r.lookups(), 3, "looked up again once the TTL is over");
    }

    #[tokio::test]
    async fn hyper_gets_addresses_without_a_port() {
        let r = Resolver::new(DNS_TTL);
        let mut h = HyperResolver(r.clone());
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = h.call(name).await.unwrap().collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.port() == 0),
            "{addrs:?}"
        );
        assert_eq!(r.lookups(), 1);
    }
}
