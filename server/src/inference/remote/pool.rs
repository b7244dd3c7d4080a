//! The nodes one kind of remote engine can use (workers found in the database, or configured
//! endpoints), whether each is up, and the order a key tries them in.

use super::rendezvous;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Stable across restarts of the same address for endpoints (its URL); a worker's process name.
    pub name: String,
    pub url: String,
}

/// A node and what was last learned about it.
#[derive(Clone, Debug)]
pub struct Member {
    pub node: Node,
    pub up: bool,
    /// Why it is down.
    pub detail: Option<String>,
}

/// How a pool's nodes are probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Duet workers: `GET {url}/health` answers with status `ok` once their models are loaded.
    Worker,
    /// OpenAI-compatible servers: `GET {base}/models` answers 200.
    OpenAi,
}

#[derive(Clone)]
pub struct Pool {
    members: Arc<Mutex<Vec<Member>>>,
    pub probe: Probe,
    /// Sent to OpenAI-compatible servers as their API key, to workers as the shared secret.
    pub api_key: Option<String>,
}

/// Why a worker that answers is skipped: its secret is not this process's.
pub const REFUSED_SECRET: &str =
    "it refuses this process's WORKER_SECRET (set the same on every web process and worker)";

impl Pool {
    pub fn new(probe: Probe, api_key: Option<String>) -> Pool {
        Pool { members: Arc::default(), probe, api_key }
    }

    /// Configured endpoints, named by their URLs; up until a probe or a request says otherwise.
    pub fn endpoints(urls: &[String], api_key: Option<String>) -> Pool {
        let pool = Pool::new(Probe::OpenAi, api_key);
        pool.set_nodes(urls.iter().map(|u| Node { name: u.clone(), url: u.clone() }).collect());
        pool
    }

    /// The nodes there are now; those known keep their state, new ones start up.
    pub fn set_nodes(&self, nodes: Vec<Node>) {
        let mut members = self.members.lock().expect("pool lock");
        let old = std::mem::take(&mut *members);
        *members = nodes
            .into_iter()
            .map(|node| match old.iter().find(|m| m.node == node) {
                Some(known) => known.clone(),
                None => Member { node, up: true, detail: None },
            })
            .collect();
    }

    pub fn members(&self) -> Vec<Member> {
        self.members.lock().expect("pool lock").clone()
    }

    /// The nodes that are up, in the order `key` prefers them.
    pub fn ranked(&self, key: &str) -> Vec<Node> {
        let members = self.members.lock().expect("pool lock");
        let up: Vec<&Node> = members.iter().filter(|m| m.up).map(|m| &m.node).collect();
        rendezvous::rank(key, &up, |n| n.name.as_str()).into_iter().map(|n| (*n).clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.lock().expect("pool lock").is_empty()
    }

    /// Whether any node is up.
    pub fn any_up(&self) -> bool {
        self.members.lock().expect("pool lock").iter().any(|m| m.up)
    }

    pub fn mark(&self, node: &Node, result: Result<(), String>) {
        let mut members = self.members.lock().expect("pool lock");
        if let Some(m) = members.iter_mut().find(|m| m.node == *node) {
            if m.up != result.is_ok() {
                match &result {
                    Ok(()) => tracing::info!(node = %node.url, "engine node up"),
                    Err(why) => {
                        tracing::warn!(node = %node.url, reason = %why, "engine node down: skipped until healthy again")
                    }
                }
            }
            m.up = result.is_ok();
            m.detail = result.err();
        }
    }

    /// `POST {node}/{path}` with a JSON body and, for endpoints, their API key.
    pub fn post_json(
        &self,
        client: &reqwest::Client,
        node: &Node,
        path: &str,
        body: String,
    ) -> reqwest::RequestBuilder {
        let call = client
            .post(format!("{}/{path}", node.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        match &self.api_key {
            Some(key) => call.bearer_auth(key),
            None => call,
        }
    }

    /// Probe every node now.
    pub async fn probe_all(&self, client: &reqwest::Client) {
        for member in self.members() {
            let result = self.probe_one(client, &member.node).await;
            self.mark(&member.node, result);
        }
    }

    async fn probe_one(&self, client: &reqwest::Client, node: &Node) -> Result<(), String> {
        let url = match self.probe {
            Probe::Worker => format!("{}/health", node.url),
            Probe::OpenAi => format!("{}/models", node.url),
        };
        let mut request = client.get(&url).timeout(Duration::from_secs(5));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| format!("unreachable: {}", super::cause(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        if self.probe == Probe::Worker {
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            let health: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            if health["status"] != "ok" {
                return Err("its models are not ready yet".into());
            }
            // A route that needs the secret and answers at once (404: no such reply kept).
            let mut check = client.get(format!("{}/internal/replies/probe", node.url)).timeout(Duration::from_secs(5));
            if let Some(secret) = &self.api_key {
                check = check.header(super::wire::SECRET_HEADER, secret);
            }
            let status = check.send().await.map_err(|e| format!("unreachable: {}", super::cause(&e)))?.status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                return Err(REFUSED_SECRET.into());
            }
        }
        Ok(())
    }

    /// Probe every node every `every`, for as long as the process runs.
    pub fn keep_probing(&self, client: reqwest::Client, every: Duration) {
        let pool = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                pool.probe_all(&client).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> Node {
        Node { name: n.into(), url: format!("http://{n}") }
    }

    #[test]
    fn down_nodes_are_skipped_and_keys_fall_to_their_next_choice() {
        let pool = Pool::new(Probe::Worker, None);
        pool.set_nodes(vec![node("a"), node("b"), node("c")]);
        let all = pool.ranked("conversation-1");
        assert_eq!(all.len(), 3);
        pool.mark(&all[0], Err("gone".into()));
        assert_eq!(pool.ranked("conversation-1"), all[1..].to_vec());
        // A node listed again keeps its state; one that left is forgotten.
        pool.set_nodes(vec![all[0].clone(), all[1].clone()]);
        assert_eq!(pool.ranked("conversation-1"), vec![all[1].clone()]);
        pool.mark(&all[0], Ok(()));
        assert_eq!(pool.ranked("conversation-1"), all[..2].to_vec());
        assert!(pool.any_up());
    }
}
