//! The emulator's switchboard: one task that knows every socket, who is registered, and which
//! call each call id belongs to. It answers the bootstrap, pushes presence, starts calls and
//! hands call frames to the call's own task (docs/protocol.md §9).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::Context;
use super::call::{self, CallInput, CallSetup, Endpoint, HandOverReply, PartyState};
use super::limits::{LogBudget, warn_within};
use crate::lock::lock;
use crate::protocol::{
    Bye, CallId, CallInfo, CallScope, ClientFrame, Presence, ServerFrame, SipCode,
};

pub(super) type SocketId = u64;
pub(super) type CallKey = u64;
/// Frames to one socket's writer; `None` asks it to close the socket.
pub(super) type SocketTx = mpsc::UnboundedSender<Option<ServerFrame>>;

/// How long a registration lasts before the client must refresh it (`sip-register` reply).
const REGISTRATION_SECS: u32 = 3600;

pub(super) enum SwitchInput {
    Open {
        socket: SocketId,
        extension: String,
        tx: SocketTx,
    },
    Frame {
        socket: SocketId,
        frame: ClientFrame,
    },
    Closed {
        socket: SocketId,
    },
    Call(CallReport),
}

/// What a call task tells the switch.
pub(super) enum CallReport {
    /// The parties' states changed: refresh the `call-state` lists.
    Parties {
        call: CallKey,
        parties: Vec<PartyState>,
    },
    /// A blind transfer needs the target's endpoints (each with a fresh call id, already
    /// routed to `call`), or the code to fail with.
    Transfer {
        call: CallKey,
        target: String,
        reply: oneshot::Sender<Result<Vec<Endpoint>, SipCode>>,
    },
    /// An attended transfer: call `call`'s party on `socket` asks that the far end of call
    /// `id2` (its own other call) be handed over to `call`.
    Join {
        call: CallKey,
        socket: SocketId,
        id2: CallId,
        reply: HandOverReply,
    },
    /// A party moved from one call to another (attended transfer): its ids now route to `to`.
    Moved {
        from: CallKey,
        to: CallKey,
        ids: Vec<CallId>,
        socket: SocketId,
    },
    Ended {
        call: CallKey,
    },
}

struct SocketEntry {
    extension: String,
    tx: SocketTx,
    registered: bool,
    own_calls: bool,
    domain_calls: bool,
    blf: HashSet<String>,
}

struct CallEntry {
    /// The extension that placed it.
    caller: String,
    inbox: mpsc::UnboundedSender<CallInput>,
    ids: Vec<CallId>,
    sockets: HashSet<SocketId>,
    parties: Vec<PartyState>,
}

pub(super) struct Switch {
    ctx: Arc<Context>,
    inbox: mpsc::UnboundedSender<SwitchInput>,
    sockets: BTreeMap<SocketId, SocketEntry>,
    calls: HashMap<CallKey, CallEntry>,
    callids: HashMap<CallId, CallKey>,
    next_call: CallKey,
    /// Live calls placed by each extension.
    placed: HashMap<String, usize>,
    /// Log lines about refused calls.
    refusal_log: LogBudget,
}

impl Switch {
    pub(super) fn new(ctx: Arc<Context>, inbox: mpsc::UnboundedSender<SwitchInput>) -> Self {
        Self {
            ctx,
            inbox,
            sockets: BTreeMap::new(),
            calls: HashMap::new(),
            callids: HashMap::new(),
            next_call: 1,
            placed: HashMap::new(),
            refusal_log: LogBudget::new(Instant::now()),
        }
    }

    pub(super) async fn run(mut self, mut inputs: mpsc::UnboundedReceiver<SwitchInput>) {
        while let Some(input) = inputs.recv().await {
            match input {
                SwitchInput::Open {
                    socket,
                    extension,
                    tx,
                } => self.open(socket, extension, tx),
                SwitchInput::Frame { socket, frame } => self.frame(socket, frame),
                SwitchInput::Closed { socket } => self.closed(socket),
                SwitchInput::Call(report) => self.call_report(report),
            }
        }
    }

    fn send(&self, socket: SocketId, frame: ServerFrame) {
        if let Some(entry) = self.sockets.get(&socket) {
            let _ = entry.tx.send(Some(frame));
        }
    }

    fn presence(&self, extension: &str) -> Presence {
        let registered = self
            .sockets
            .values()
            .any(|s| s.registered && s.extension == extension);
        Presence {
            account: extension.to_owned(),
            domain: Some(self.ctx.domain.clone()),
            name: self
                .ctx
                .accounts
                .extension(extension)
                .map(|e| e.name.clone()),
            registered,
            dnd: false,
            chatstatus: None,
            // The vendor's `user-state` example says `type: "extensions"`.
            kind: Some("extensions".into()),
        }
    }

    fn open(&mut self, socket: SocketId, extension: String, tx: SocketTx) {
        lock(&self.ctx.journal).event("socket-open", Some(&extension), None, json!(null));
        self.sockets.insert(
            socket,
            SocketEntry {
                extension,
                tx,
                registered: false,
                own_calls: false,
                domain_calls: false,
                blf: HashSet::new(),
            },
        );
        let accounts = self
            .ctx
            .accounts
            .extensions
            .keys()
            .map(|number| self.presence(number))
            .collect();
        let calls = Some(self.call_list("", true));
        self.send(socket, ServerFrame::DomainState { accounts, calls });
    }

    fn closed(&mut self, socket: SocketId) {
        let Some(entry) = self.sockets.remove(&socket) else {
            return;
        };
        lock(&self.ctx.journal).event("socket-closed", Some(&entry.extension), None, json!(null));
        for call in self.calls.values() {
            if call.sockets.contains(&socket) {
                let _ = call.inbox.send(CallInput::SocketClosed(socket));
            }
        }
        if entry.registered {
            self.presence_changed(&entry.extension);
        }
    }

    /// Tells every socket of the domain about `extension` (and blf watchers in particular).
    fn presence_changed(&self, extension: &str) {
        let presence = self.presence(extension);
        for entry in self.sockets.values() {
            let frame = if entry.blf.contains(extension) {
                ServerFrame::Blf(presence.clone())
            } else {
                ServerFrame::UserState(presence.clone())
            };
            let _ = entry.tx.send(Some(frame));
        }
    }

    fn frame(&mut self, socket: SocketId, frame: ClientFrame) {
        let Some(entry) = self.sockets.get_mut(&socket) else {
            return;
        };
        let extension = entry.extension.clone();
        match frame {
            ClientFrame::AvoidDisconnect => {}
            ClientFrame::CallSubscription { scope, subscribe } => {
                match scope {
                    CallScope::Own => entry.own_calls = subscribe,
                    CallScope::Domain => entry.domain_calls = subscribe,
                    CallScope::Orbit => {}
                }
                if subscribe && scope != CallScope::Orbit {
                    let calls = self.call_list(&extension, scope == CallScope::Domain);
                    self.send(socket, ServerFrame::CallState(calls));
                }
            }
            ClientFrame::Blf { add, remove } => {
                for number in &remove {
                    entry.blf.remove(number);
                }
                // Only extensions of the domain have a presence to follow: the list stays as
                // short as the domain, whatever a client asks for.
                let known: Vec<String> = add
                    .into_iter()
                    .filter(|number| self.ctx.accounts.extension(number).is_some())
                    .collect();
                entry.blf.extend(known.iter().cloned());
                for number in known {
                    self.send(socket, ServerFrame::Blf(self.presence(&number)));
                }
            }
            ClientFrame::Ringtones => {
                let mut list = serde_json::Map::new();
                list.insert(
                    "ringtones".into(),
                    json!([{ "name": "default", "url": "" }]),
                );
                self.send(socket, ServerFrame::Ringtones(list));
            }
            ClientFrame::SipRegister { useragent } => {
                let first = !self
                    .sockets
                    .values()
                    .any(|s| s.registered && s.extension == extension);
                if let Some(entry) = self.sockets.get_mut(&socket) {
                    entry.registered = true;
                }
                lock(&self.ctx.journal).event(
                    "register",
                    Some(&extension),
                    None,
                    json!({ "useragent": useragent }),
                );
                self.send(
                    socket,
                    ServerFrame::SipRegister {
                        added: true,
                        expires: Some(REGISTRATION_SECS),
                    },
                );
                if first {
                    self.presence_changed(&extension);
                }
            }
            ClientFrame::SdpPacket { callid, .. } if self.callids.contains_key(&callid) => {
                // A repeated frame, a retry, or another client's id: the call it names goes
                // on undisturbed rather than losing its routing to a second call.
                lock(&self.ctx.journal).event(
                    "duplicate-dial",
                    Some(&extension),
                    Some(callid.as_str()),
                    json!({}),
                );
            }
            ClientFrame::SdpPacket { to, callid, offer } => {
                self.dial(socket, &extension, to, callid, offer);
            }
            ClientFrame::Unknown(map) => {
                debug!(ext = %extension, "unknown frame ignored: {}", serde_json::Value::Object(map));
            }
            other => self.to_call(socket, other),
        }
    }

    /// The one call `socket` takes part in, if it is in exactly one: where a frame that names
    /// no call belongs (the vendor's sample sends its candidates without a `callid`).
    fn only_call_of(&self, socket: SocketId) -> Option<&CallEntry> {
        let mut calls = self.calls.values().filter(|c| {
            c.sockets.contains(&socket)
                && (c.parties.is_empty()
                    || c.parties.iter().any(|p| p.socket == socket && p.is_live()))
        });
        let first = calls.next()?;
        calls.next().is_none().then_some(first)
    }

    /// Hands a call frame to its call.
    fn to_call(&self, socket: SocketId, frame: ClientFrame) {
        let call = match frame.call_id() {
            Some(id) => self.callids.get(id).and_then(|key| self.calls.get(key)),
            None => self.only_call_of(socket),
        };
        match call {
            Some(call) => {
                let _ = call.inbox.send(CallInput::Frame { socket, frame });
            }
            None => {
                // Confirmations arrive after their call has ended; anything else is stale.
                let kind = match frame {
                    ClientFrame::ByeResponse { .. } => "bye-response",
                    ClientFrame::CancelResponse { .. } => "cancel-response",
                    _ => "unknown-call",
                };
                let extension = self.sockets.get(&socket).map(|s| s.extension.as_str());
                let detail = json!({ "frame": frame.to_json() });
                let id = frame.call_id().map(CallId::as_str);
                lock(&self.ctx.journal).event(kind, extension, id, detail);
            }
        }
    }

    /// The registered sockets of `number`, each with a fresh call id routed to `call`. Every
    /// registration rings (as on a PBX); the order they are rung in turns with each call, so
    /// that equally quick registrations (several daemons with the same bots) share the calls.
    fn endpoints(&mut self, number: &str, call: CallKey) -> Vec<Endpoint> {
        let mut endpoints: Vec<Endpoint> = self
            .sockets
            .iter()
            .filter(|(_, s)| s.registered && s.extension == number)
            .map(|(&socket, s)| Endpoint {
                socket,
                extension: s.extension.clone(),
                tx: s.tx.clone(),
                callid: CallId::random(),
            })
            .collect();
        if !endpoints.is_empty() {
            let turn = (call % endpoints.len() as u64) as usize;
            endpoints.rotate_left(turn);
        }
        if let Some(entry) = self.calls.get_mut(&call) {
            for endpoint in &endpoints {
                entry.sockets.insert(endpoint.socket);
                entry.ids.push(endpoint.callid.clone());
                self.callids.insert(endpoint.callid.clone(), call);
            }
        }
        endpoints
    }

    fn dial(
        &mut self,
        socket: SocketId,
        extension: &str,
        to: String,
        callid: CallId,
        offer: String,
    ) {
        // The caller's socket first: a dial from a socket that is gone starts nothing, and
        // leaves no routing entries behind.
        let Some(caller_tx) = self.sockets.get(&socket).map(|s| s.tx.clone()) else {
            return;
        };
        let placed = self.placed.get(extension).copied().unwrap_or(0);
        let most = self.ctx.options.calls_per_extension;
        if placed >= most {
            self.refuse_call(socket, extension, callid, &to, most);
            return;
        }
        lock(&self.ctx.journal).event(
            "dial",
            Some(extension),
            Some(callid.as_str()),
            json!({ "to": to }),
        );
        let key = self.next_call;
        self.next_call += 1;
        let known = self.ctx.accounts.extension(&to).is_some();
        let (inbox, inputs) = mpsc::unbounded_channel();
        let alias = CallId::random();
        *self.placed.entry(extension.to_owned()).or_default() += 1;
        let entry = CallEntry {
            caller: extension.to_owned(),
            inbox,
            ids: vec![callid.clone(), alias.clone()],
            sockets: HashSet::from([socket]),
            parties: Vec::new(),
        };
        self.callids.insert(callid.clone(), key);
        self.callids.insert(alias.clone(), key);
        self.calls.insert(key, entry);
        let callees = if known {
            self.endpoints(&to, key)
        } else {
            Vec::new()
        };
        let setup = CallSetup {
            key,
            caller: Endpoint {
                socket,
                extension: extension.to_owned(),
                tx: caller_tx,
                callid,
            },
            caller_alias: alias,
            to,
            offer,
            callees,
        };
        tokio::spawn(call::run(
            self.ctx.clone(),
            setup,
            inputs,
            self.inbox.clone(),
        ));
    }

    fn call_report(&mut self, report: CallReport) {
        match report {
            CallReport::Parties { call, parties } => {
                if let Some(entry) = self.calls.get_mut(&call) {
                    entry.parties = parties.clone();
                }
                self.push_call_state(&parties);
            }
            CallReport::Transfer {
                call,
                target,
                reply,
            } => {
                let result = if self.ctx.accounts.extension(&target).is_none() {
                    Err(SipCode::NOT_FOUND)
                } else {
                    let endpoints = self.endpoints(&target, call);
                    if endpoints.is_empty() {
                        Err(SipCode::TEMPORARILY_UNAVAILABLE)
                    } else {
                        Ok(endpoints)
                    }
                };
                let _ = reply.send(result);
            }
            CallReport::Join {
                call,
                socket,
                id2,
                reply,
            } => match self.callids.get(&id2).copied() {
                Some(other) if other != call => {
                    if let Some(entry) = self.calls.get(&other) {
                        let _ = entry.inbox.send(CallInput::HandOver {
                            socket,
                            id2,
                            to: call,
                            reply,
                        });
                    }
                }
                Some(_) => {
                    let _ = reply.send(Err("id2 names the same call"));
                }
                None => {
                    let _ = reply.send(Err("id2 names no call"));
                }
            },
            CallReport::Moved {
                from,
                to,
                ids,
                socket,
            } => {
                if let Some(entry) = self.calls.get_mut(&from) {
                    entry.ids.retain(|id| !ids.contains(id));
                }
                if let Some(entry) = self.calls.get_mut(&to) {
                    entry.sockets.insert(socket);
                    entry.ids.extend(ids.iter().cloned());
                    for id in ids {
                        self.callids.insert(id, to);
                    }
                }
            }
            CallReport::Ended { call } => {
                if let Some(entry) = self.calls.remove(&call) {
                    if let Some(placed) = self.placed.get_mut(&entry.caller) {
                        *placed -= 1;
                        if *placed == 0 {
                            self.placed.remove(&entry.caller);
                        }
                    }
                    for id in &entry.ids {
                        self.callids.remove(id);
                    }
                    let ended: Vec<PartyState> = entry
                        .parties
                        .into_iter()
                        .map(|mut p| {
                            p.state = PartyState::disconnected();
                            p
                        })
                        .collect();
                    self.push_call_state(&ended);
                }
            }
        }
    }

    /// An extension with `most` live calls placed gets `bye` 503 for one more.
    fn refuse_call(
        &mut self,
        socket: SocketId,
        extension: &str,
        callid: CallId,
        to: &str,
        most: usize,
    ) {
        warn_within!(
            self.refusal_log,
            Instant::now(),
            ext = %extension,
            "call refused: {most} calls placed and live already"
        );
        lock(&self.ctx.journal).event(
            "call-refused",
            Some(extension),
            Some(callid.as_str()),
            json!({ "to": to, "reason": "too many calls" }),
        );
        self.send(
            socket,
            ServerFrame::Bye(Bye {
                callid,
                cseq: None,
                code: Some(SipCode(503)),
                reason: Some("Too Many Calls".into()),
            }),
        );
    }

    /// Sends the changed calls to the sockets that follow them: their own extension's
    /// (`own-calls`) or all (`domain-calls`). Lists after a subscription are complete; later
    /// ones carry only what changed (choice: full lists on every change cost O(calls²)).
    fn push_call_state(&self, parties: &[PartyState]) {
        let infos: Vec<(&str, CallInfo)> = parties
            .iter()
            .map(|p| (p.extension.as_str(), p.info()))
            .collect();
        for entry in self.sockets.values() {
            let calls: Vec<CallInfo> = infos
                .iter()
                .filter(|(extension, _)| {
                    entry.domain_calls || (entry.own_calls && *extension == entry.extension)
                })
                .map(|(_, info)| info.clone())
                .collect();
            if !calls.is_empty() {
                let _ = entry.tx.send(Some(ServerFrame::CallState(calls)));
            }
        }
    }

    fn call_list(&self, extension: &str, domain: bool) -> Vec<CallInfo> {
        self.calls
            .values()
            .flat_map(|c| &c.parties)
            .filter(|p| domain || p.extension == extension)
            .map(PartyState::info)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::config::Secret;
    use crate::pbx::journal::Journal;
    use crate::pbx::limits::Limits;
    use crate::pbx::{Accounts, CallOptions, MediaMode};
    use crate::protocol::Dialect;

    fn switch() -> Switch {
        let ctx = Arc::new(Context {
            accounts: Accounts::defaults(Secret::new("admin")),
            domain: "localhost".into(),
            options: CallOptions {
                dialect: Dialect::Legacy,
                media: MediaMode::Relay,
                ring_timeout: Duration::from_secs(60),
                offer_timeout: Duration::from_secs(10),
                calls_per_extension: Limits::default().calls_per_extension,
            },
            media: None,
            journal: Mutex::new(Journal::new(Limits::default().journal_bytes)),
        });
        Switch::new(ctx, mpsc::unbounded_channel().0)
    }

    #[tokio::test]
    async fn a_dial_from_a_socket_that_is_gone_leaves_no_routing_behind() {
        let mut switch = switch();
        switch.dial(7, "502", "503".into(), CallId::random(), "v=0".into());
        assert!(switch.calls.is_empty());
        assert!(switch.callids.is_empty());
    }
}
