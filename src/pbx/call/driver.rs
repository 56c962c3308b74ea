//! The task that runs one emulator call: it owns the sockets' writers, the media legs and the
//! timers, feeds the call's [`machine`](super::machine) what happens, and does what it asks.
//! Media work and questions to the switch are awaited where they are asked for and their
//! results fed back at once, so the machine's steps never interleave.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;
use tracing::{debug, info, warn};

use super::machine::{
    Call, Input, LegCommand, LegFailure, LegMedia, MediaEvent, Negotiation, Output, PartyIndex,
    Settings, Start,
};
use super::{CallInput, CallSetup, HandOver, HandOverReply};
use crate::lock::lock;
use crate::media::transport::TransportState;
use crate::media::{LegEvent, MediaLeg};
use crate::pbx::switch::{CallKey, CallReport, SocketId, SocketTx, SwitchInput};
use crate::pbx::{Context, MediaMode};
use crate::protocol::{Dialect, RemoteCandidate, SipCode};

/// How long an attended transfer waits for the other call to hand its far end over.
const HAND_OVER_WAIT: Duration = Duration::from_secs(5);
/// Media counters in `/emulator/calls` are refreshed this often.
const VIEW_REFRESH: Duration = Duration::from_secs(1);

type MediaTx = mpsc::UnboundedSender<(PartyIndex, LegEvent)>;

/// Where a leg's events go: a party of a call. Retargeted when the party moves to another
/// call, cut when its leg is replaced (so a closed leg's last events are not taken for the
/// new one's).
#[derive(Clone)]
struct LegRoute(Arc<Mutex<Option<(PartyIndex, MediaTx)>>>);

impl LegRoute {
    fn set(&self, target: Option<(PartyIndex, MediaTx)>) {
        *lock(&self.0) = target;
    }
}

/// A party's leg and where its events go.
pub(in crate::pbx) struct AttachedLeg {
    leg: Arc<MediaLeg>,
    route: LegRoute,
}

/// The emulator never waits for what it queues on a leg to finish: one item id serves it all.
const UNWATCHED_ITEM: crate::media::player::ItemId = 0;

struct Driver {
    ctx: Arc<Context>,
    key: CallKey,
    switch: mpsc::UnboundedSender<SwitchInput>,
    call: Call,
    /// Each socket's writer.
    sockets: HashMap<SocketId, SocketTx>,
    legs: HashMap<PartyIndex, AttachedLeg>,
    media_tx: MediaTx,
    /// Where the switch's hand-over request waits for its answer.
    hand_over: Option<HandOverReply>,
}

/// Runs one call until every party is gone.
pub(in crate::pbx) async fn run(
    ctx: Arc<Context>,
    setup: CallSetup,
    mut inputs: mpsc::UnboundedReceiver<CallInput>,
    switch: mpsc::UnboundedSender<SwitchInput>,
) {
    let (media_tx, mut media_rx) = mpsc::unbounded_channel();
    let settings = Settings {
        media: ctx.options.media,
        modern: ctx.options.dialect == Dialect::Modern,
        ring_timeout: ctx.options.ring_timeout,
        offer_timeout: ctx.options.offer_timeout,
        epoch: lock(&ctx.journal).epoch(),
    };
    let sockets = std::iter::once(&setup.caller)
        .chain(&setup.callees)
        .map(|endpoint| (endpoint.socket, endpoint.tx.clone()))
        .collect();
    let accounts = &ctx.accounts;
    let start = Start {
        key: setup.key,
        caller: setup.caller.peer(accounts),
        caller_alias: setup.caller_alias,
        to_name: accounts.display_name(&setup.to),
        to: setup.to,
        offer: setup.offer,
        callees: setup.callees.iter().map(|e| e.peer(accounts)).collect(),
    };
    let (call, outputs) = Call::start(settings, start, Instant::now());
    let mut driver = Driver {
        ctx,
        key: setup.key,
        switch,
        call,
        sockets,
        legs: HashMap::new(),
        media_tx,
        hand_over: None,
    };
    driver.apply(outputs).await;
    let anchored = driver.ctx.options.media == MediaMode::Anchored;
    let mut refresh = tokio::time::interval(VIEW_REFRESH);
    while !driver.call.is_over() {
        let deadline = driver.call.next_deadline();
        let input = tokio::select! {
            input = inputs.recv() => match input {
                Some(CallInput::Frame { socket, frame }) => Input::Frame { socket, frame },
                Some(CallInput::SocketClosed(socket)) => Input::SocketClosed(socket),
                Some(CallInput::HandOver { socket, id2, to, reply }) => {
                    driver.hand_over = Some(reply);
                    Input::HandOver { socket, id2, to }
                }
                None => break,
            },
            Some((party, event)) = media_rx.recv() => match media_event(event) {
                Some(event) => Input::Media { party, event },
                None => continue,
            },
            _ = refresh.tick(), if anchored => {
                driver.publish_view();
                continue;
            }
            () = sleep_until(deadline.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)), if deadline.is_some() => {
                let outputs = driver.call.on_timeout(Instant::now());
                driver.apply(outputs).await;
                continue;
            }
        };
        driver.step(input).await;
    }
    driver.finish().await;
}

/// What of a leg's events the call hears.
fn media_event(event: LegEvent) -> Option<MediaEvent> {
    match event {
        LegEvent::LocalCandidate(candidate) => {
            Some(MediaEvent::LocalCandidate(candidate.candidate))
        }
        LegEvent::State(TransportState::Connected) => Some(MediaEvent::Up),
        LegEvent::State(TransportState::Failed) => Some(MediaEvent::Failed),
        LegEvent::Digit {
            digit,
            inband: false,
            ..
        } => Some(MediaEvent::Digit(digit.as_char())),
        _ => None,
    }
}

impl Driver {
    async fn step(&mut self, input: Input) {
        let outputs = self.call.handle(input, Instant::now());
        self.apply(outputs).await;
    }

    /// Does what the call asks, in order; a result goes back to the call at once and what
    /// that step asks is done before the rest.
    async fn apply(&mut self, outputs: Vec<Output>) {
        let mut queue: VecDeque<Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            let Some(result) = self.output(output).await else {
                continue;
            };
            let more = self.call.handle(result, Instant::now());
            for output in more.into_iter().rev() {
                queue.push_front(output);
            }
        }
    }

    /// Does one thing the call asked; its result, when it has one.
    async fn output(&mut self, output: Output) -> Option<Input> {
        match output {
            Output::Send { to, frame } => {
                let socket = self.call.party(to)?.peer().socket;
                if let Some(tx) = self.sockets.get(&socket) {
                    let _ = tx.send(Some(frame));
                }
                None
            }
            Output::Leg { party, command } => self.leg(party, command).await,
            Output::Journal(entry) => {
                lock(&self.ctx.journal).event(
                    entry.kind,
                    Some(&entry.extension),
                    Some(&entry.callid),
                    entry.detail,
                );
                None
            }
            Output::FindTarget(target) => Some(Input::Targets(self.find_target(target).await)),
            Output::Join { socket, id2 } => Some(Input::Joined(self.join(socket, id2).await)),
            Output::GiveAway { party, leaving } => Some(self.give_away(party, leaving)),
            Output::RefuseHandOver(why) => {
                if let Some(reply) = self.hand_over.take() {
                    let _ = reply.send(Err(why));
                }
                None
            }
            Output::Moved { to, ids, socket } => {
                let _ = self.switch.send(SwitchInput::Call(CallReport::Moved {
                    from: self.key,
                    to,
                    ids,
                    socket,
                }));
                None
            }
            Output::Report => {
                self.report();
                None
            }
        }
    }

    /// Media work on a party's leg; its result, when it has one.
    async fn leg(&mut self, party: PartyIndex, command: LegCommand) -> Option<Input> {
        if let LegCommand::Negotiate {
            purpose,
            negotiation,
        } = command
        {
            let result = self.negotiate(party, negotiation).await;
            return Some(Input::Negotiated {
                party,
                purpose,
                result,
            });
        }
        let leg = self.legs.get(&party)?.leg.clone();
        match command {
            LegCommand::Negotiate { .. } => None,
            LegCommand::ApplyAnswer(answer) => {
                let ok = match leg.apply_answer(&answer).await {
                    Ok(()) => true,
                    Err(e) => {
                        info!("answer refused: {e}");
                        false
                    }
                };
                Some(Input::AnswerApplied { party, ok })
            }
            LegCommand::AddCandidate(candidate) => {
                let remote = RemoteCandidate {
                    callid: None,
                    candidate,
                    addresses: vec![],
                };
                if let Err(e) = leg.add_remote_candidate(&remote).await {
                    debug!("candidate refused: {e}");
                }
                None
            }
            LegCommand::Play(signal, loops) => {
                leg.play_signal(UNWATCHED_ITEM, signal, loops);
                None
            }
            LegCommand::Stop => {
                leg.stop();
                None
            }
            LegCommand::Bridge(to) => {
                leg.bridge_to(to.and_then(|to| self.legs.get(&to)).map(|to| &*to.leg));
                None
            }
            LegCommand::RelayDtmf { from, digit } => leg
                .send_dtmf(UNWATCHED_ITEM, &digit.to_string())
                .is_ok()
                .then_some(Input::DtmfRelayed { from, digit }),
            LegCommand::Close => {
                leg.bridge_to(None);
                tokio::spawn(async move { leg.close().await });
                None
            }
        }
    }

    /// A new leg for `party` that offers or answers; on success it becomes the party's leg
    /// (a leg it replaces is cut off and closed), on failure it is closed.
    async fn negotiate(
        &mut self,
        party: PartyIndex,
        negotiation: Negotiation,
    ) -> Result<String, LegFailure> {
        let new = self.new_leg(party).await.ok_or(LegFailure::NoLeg)?;
        let sdp = match negotiation {
            Negotiation::Offer => new.leg.create_offer().await,
            Negotiation::Answer(offer) => new.leg.accept_offer(&offer).await,
        };
        match sdp {
            Ok(sdp) => {
                self.attach(party, new);
                Ok(sdp)
            }
            Err(e) => {
                new.route.set(None);
                new.leg.close().await;
                Err(LegFailure::Refused(e.to_string()))
            }
        }
    }

    /// A new media leg whose events go to `party` (not yet attached: see [`Driver::attach`]).
    async fn new_leg(&self, party: PartyIndex) -> Option<AttachedLeg> {
        let media = self.ctx.media.as_ref()?;
        match media.new_leg().await {
            Ok((leg, mut events)) => {
                let route = LegRoute(Arc::new(Mutex::new(Some((party, self.media_tx.clone())))));
                let target = route.clone();
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        let sent = match &*lock(&target.0) {
                            Some((party, tx)) => tx.send((*party, event)).is_ok(),
                            None => false,
                        };
                        if !sent {
                            break;
                        }
                    }
                });
                Some(AttachedLeg {
                    leg: Arc::new(leg),
                    route,
                })
            }
            Err(e) => {
                warn!("emulator media leg: {e}");
                None
            }
        }
    }

    /// Makes `new` the party's leg; a leg it replaces is cut off and closed.
    fn attach(&mut self, party: PartyIndex, new: AttachedLeg) {
        if let Some(old) = self.legs.insert(party, new) {
            old.route.set(None);
            old.leg.bridge_to(None);
            tokio::spawn(async move { old.leg.close().await });
        }
    }

    /// Blind transfer: the target's endpoints, each with a fresh call id routed here.
    async fn find_target(&mut self, target: String) -> Result<Vec<super::machine::Peer>, SipCode> {
        let (reply, answer) = oneshot::channel();
        let _ = self.switch.send(SwitchInput::Call(CallReport::Transfer {
            call: self.key,
            target,
            reply,
        }));
        let endpoints = answer.await.unwrap_or(Err(SipCode::SERVER_ERROR))?;
        for endpoint in &endpoints {
            self.sockets.insert(endpoint.socket, endpoint.tx.clone());
        }
        let accounts = &self.ctx.accounts;
        Ok(endpoints.iter().map(|e| e.peer(accounts)).collect())
    }

    /// Attended transfer: asks the switch for the far end of our other call `id2`, which
    /// joins this call (its leg's events come here from now on).
    async fn join(
        &mut self,
        socket: SocketId,
        id2: crate::protocol::CallId,
    ) -> Result<Box<super::machine::Party>, &'static str> {
        let (reply, handed) = oneshot::channel();
        let _ = self.switch.send(SwitchInput::Call(CallReport::Join {
            call: self.key,
            socket,
            id2,
            reply,
        }));
        let HandOver { party, tx, leg } = match tokio::time::timeout(HAND_OVER_WAIT, handed).await {
            Ok(Ok(joined)) => joined?,
            Ok(Err(_)) | Err(_) => return Err("the other call did not answer"),
        };
        let index = self.call.next_party();
        self.sockets.insert(party.peer().socket, tx);
        if let Some(leg) = leg {
            leg.route.set(Some((index, self.media_tx.clone())));
            self.legs.insert(index, leg);
        }
        Ok(party)
    }

    /// Attended transfer, the other side: `party` goes to the call that asked, leg and all;
    /// it comes back when that call gave up waiting.
    fn give_away(&mut self, party: PartyIndex, leaving: Box<super::machine::Party>) -> Input {
        let Some(reply) = self.hand_over.take() else {
            return Input::HandOverFailed(leaving);
        };
        let Some(tx) = self.sockets.get(&leaving.peer().socket).cloned() else {
            return Input::HandOverFailed(leaving);
        };
        let hand_over = HandOver {
            party: leaving,
            tx,
            leg: self.legs.remove(&party),
        };
        if let Err(Ok(HandOver {
            party: back, leg, ..
        })) = reply.send(Ok(hand_over))
        {
            if let Some(leg) = leg {
                self.legs.insert(party, leg);
            }
            return Input::HandOverFailed(back);
        }
        Input::HandedOver
    }

    /// Publishes the call's state: `call-state` lists through the switch, the journal view.
    fn report(&self) {
        let _ = self.switch.send(SwitchInput::Call(CallReport::Parties {
            call: self.key,
            parties: self.call.party_states(),
        }));
        self.publish_view();
    }

    fn publish_view(&self) {
        let view = self.call.view(Instant::now(), |party| {
            let Some(attached) = self.legs.get(&party) else {
                return LegMedia::default();
            };
            let stats = attached.leg.stats();
            LegMedia {
                codec: attached.leg.negotiated().map(|n| n.codec.name().to_owned()),
                packets_sent: stats.packets_sent,
                packets_received: stats.packets_received,
            }
        });
        lock(&self.ctx.journal).call(view);
    }

    /// The call is over: the legs still open are closed, the view published, the switch told.
    async fn finish(mut self) {
        let outputs = self.call.wind_up();
        self.apply(outputs).await;
        self.publish_view();
        let _ = self
            .switch
            .send(SwitchInput::Call(CallReport::Ended { call: self.key }));
    }
}
