--------------------------- MODULE sync_protocol ---------------------------
(***************************************************************************)
(* snep: conntrack state synchronization for an HA cluster, and failover.  *)
(*                                                                         *)
(* Read this module as the protocol's table of contents:                   *)
(*   1. constants and the values the protocol talks about;                 *)
(*   2. variables, grouped: environment, tables, epochs, channel, sender,  *)
(*      receiver, network, ghosts (ghosts only feed the properties);       *)
(*   3. helpers (epochs, the channel, sending, the resend queue);          *)
(*   4. the HA manager, as keepalived is: VRRP elects a master (Promote),  *)
(*      resolves two masters (Resign), says backup or fault (Demote,       *)
(*      Fault); processes die and restart (Fail, Recover); snep takes      *)
(*      over again when it is master and hears no primary (Reassert);      *)
(*   5. the network and the adversary (LinkDown, LinkUp, LoseMsg,          *)
(*      DuplicateMsg; Capture and Replay: any frame ever sent, replayed    *)
(*      to any node) and the channel's sessions (Bind, Reject);            *)
(*   6. traffic on the primary (ConnNew, ConnUpdate, ConnDestroy) and the  *)
(*      kernel of the others (KernelExpire);                               *)
(*   7. the sender (Notify, FlushIncremental, SendBulk, Retransmit,        *)
(*      SendAlive, RecvAck, RecvNack, RecvResyncRequest, PeerTimeout,      *)
(*      AckAges): one dump per need (a peer waiting for a dump it can      *)
(*      still get whole starts no new one);                                *)
(*   8. the receiver (RecvState, RecvAlive, SendAck, RequestResync,        *)
(*      RecvHello: a newer epoch claimed by a primary fences a primary;    *)
(*      one merely heard of makes it take a term above, Retake);           *)
(*   9. Next, fairness, and the properties.                                *)
(*                                                                         *)
(* Every action has one Python counterpart (spec/README.md holds the       *)
(* table). A protocol change starts here, is model-checked, then mirrored. *)
(*                                                                         *)
(* Messages live in a bag: any message in flight can be received next      *)
(* (reordering), LoseMsg removes a copy, DuplicateMsg adds one; a cut     *)
(* link or a dead process loses every copy in flight to it. The network   *)
(* holds at most MaxInFlight messages: a send that does not fit is lost   *)
(* and flagged (overflow), so a flood is a state the model reports.       *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets, Bags

\* ---------------------------------------------------------------------------
\* 1. Constants
\* ---------------------------------------------------------------------------
CONSTANTS
    Node,        \* node ids: natural numbers (they break epoch ties)
    Conn,        \* connection identities (interchangeable: symmetry set)
    NoConn,      \* "no entry" in a STATE frame (an empty bulk dump)
    Level,       \* "strong", "weak" or "incremental"
    MaxVersion,  \* versions 1..MaxVersion per connection (bounds traffic)
    MaxTerm,     \* promotions take terms 1..MaxTerm
    QueueBound,  \* frames the resend queue holds at most
    MaxFail,     \* how many times nodes fail (process dies)
    MaxHA,       \* how many Fault/Demote decisions the HA manager makes
    MaxCut,      \* how many times a link goes down
    MaxLoss,     \* how many messages the network loses (beyond cut links)
    MaxDup,      \* how many messages the network duplicates
    MaxReplay,   \* how many captured frames the adversary replays
    MaxInFlight, \* messages the network holds at most (beyond: lost, overflow)
    SplitBrain   \* does VRRP share the sync links (a partition: two masters)?

ASSUME Node \subseteq Nat \ {0} /\ Cardinality(Node) >= 2
ASSUME Level \in {"strong", "weak", "incremental"}
ASSUME NoConn \notin Conn
ASSUME QueueBound \in Nat \ {0}
ASSUME SplitBrain \in BOOLEAN
ASSUME {MaxVersion, MaxTerm, MaxFail, MaxHA, MaxCut, MaxLoss, MaxDup, MaxReplay,
        MaxInFlight} \subseteq Nat

\* Roles. SYNCING: up, joined as backup, dump not complete (not ready).
\* FAULT: the HA manager says fault: receives like a backup, not ready.
DOWN == "DOWN"
SYNCING == "SYNCING"
BACKUP == "BACKUP"
PRIMARY == "PRIMARY"
FAULT == "FAULT"
Role == {DOWN, SYNCING, BACKUP, PRIMARY, FAULT}
Up(r) == r # DOWN
Receiving == {SYNCING, BACKUP, FAULT}

\* Message types. Only the primary sends STATE and ALIVE.
MSG_STATE == "STATE"
MSG_ALIVE == "ALIVE"
MSG_ACK == "ACK"
MSG_NACK == "NACK"
MSG_HELLO == "HELLO"
MSG_RESYNC == "RESYNC_REQUEST"
MsgType == {MSG_STATE, MSG_ALIVE, MSG_ACK, MSG_NACK, MSG_HELLO, MSG_RESYNC}

\* A table (kernel, internal or external cache): Conn -> version, 0 = absent.
Version == 0..MaxVersion
Table == [Conn -> Version]
EmptyTable == [c \in Conn |-> 0]
Present(t) == {c \in Conn : t[c] # 0}
\* The same table, as far as the level tells (weak: the same connections exist).
SameTable(t, u) == IF Level = "weak" THEN Present(t) = Present(u) ELSE t = u

\* An epoch is <<term, node>>, compared lexicographically; <<0, 0>> = none.
Epoch == (0..MaxTerm) \X (Node \cup {0})
NoEpoch == <<0, 0>>
EpochLT(a, b) == a[1] < b[1] \/ (a[1] = b[1] /\ a[2] < b[2])

\* Bulk dump progress of a sender: idle, start requested, running.
BulkPhase == {"idle", "start", "run"}

\* resume[n][m] of a peer whose dump's BULK_START is yet to be sent.
NoSeq == -1

\* A frame of the resend queue (a STATE frame without its destination).
Frame == [seq : Nat, conn : Conn \cup {NoConn}, ver : Version,
          start : BOOLEAN, end : BOOLEAN]

\* A process incarnation: 1 at Init, + 1 at each Recover (the random session
\* nonce a process draws at start, abstracted).
Session == 1..(MaxFail + 1)

\* Every message has every field; unused fields are 0 / NoConn / FALSE.
\* src, sess: the sender and its session; for: the recipient the frame is
\* sealed for (0: every peer, STATE and ALIVE); dst: where the network
\* delivers this copy (the adversary may deliver a copy anywhere).
\* term, enode: the epoch the message is about: STATE, ALIVE: the sender's
\* claim (it is primary of it); HELLO: the newest the sender has seen, with
\* claims = TRUE when the sender is primary of it; ACK, NACK: the epoch of
\* the stream answered; RESYNC_REQUEST: the sender's newest (unused).
\* live (HELLO): the sender follows a primary of that epoch it heard lately.
\* seq: STATE: its own seq; ALIVE: the sender's next seq (newest + 1);
\* others 0. lo..hi: the range of an ACK or NACK.
Msg == [type : MsgType, src : Node, sess : Session, for : Node \cup {0},
        dst : Node, term : Nat, enode : Node \cup {0}, claims : BOOLEAN,
        live : BOOLEAN, seq : Nat, conn : Conn \cup {NoConn}, ver : Version, start : BOOLEAN,
        end : BOOLEAN, lo : Nat, hi : Nat]

\* ---------------------------------------------------------------------------
\* 2. Variables
\* ---------------------------------------------------------------------------
\* environment: what the HA manager and the network decide
VARIABLES role,      \* role[n] \in Role
          master,    \* master[n]: keepalived's VRRP instance of n is MASTER
          linkUp,    \* set of {a, b} pairs whose link is up
          env        \* how much of each fault budget is used
envVars == <<role, master, linkUp, env>>

\* tables
VARIABLES kernel,    \* kernel[n]: n's kernel conntrack table
          internal,  \* internal[n]: what n's kernel holds (sent by a primary)
          external   \* external[n]: what peers told n (committed on takeover)
tableVars == <<kernel, internal, external>>

\* epochs
VARIABLE epoch       \* epoch[n]: newest epoch n has seen (persisted)

\* channel: sessions (process incarnations) and which one each peer accepts
VARIABLES sess,      \* sess[n]: n's current session
          bound      \* bound[n][m]: the session of m whose frames n accepts
                     \*   (0: none yet), bound by a handshake over n's own
channelVars == <<sess, bound>>

\* sender (meaningful on a primary)
VARIABLES nextSeq,   \* nextSeq[n]: seq of n's next STATE frame in its epoch
          queue,     \* queue[n]: resend queue, Seq(Frame), oldest first
          peerAck,   \* peerAck[n][m]: m acknowledged every seq below it
          peerLive,  \* peerLive[n][m]: n believes m alive (its acks count)
          bulk,      \* bulk[n] \in BulkPhase
          todo,      \* todo[n]: connections the running dump has yet to send
          dirty,     \* dirty[n]: changed connections (incremental level)
          behind,    \* behind[n][m]: m waits for a dump (PeerTx.behind)
          resume,    \* resume[n][m]: seq of the BULK_START sent while m
                     \*   waited (it follows from there), NoSeq: not sent yet
          ackedRecently \* ackedRecently[n][m]: m's acknowledged position moved
                     \*   a moment ago (retransmit_timeout), no HELLO since
peerVars == <<behind, resume, ackedRecently>>
senderVars == <<nextSeq, queue, peerAck, peerLive, bulk, todo, dirty, peerVars>>

\* receiver (meaningful on a non-primary): one stream, from the primary of
\* the newest epoch seen
VARIABLES expect,    \* expect[n]: next seq n applies
          ackFrom,   \* ackFrom[n]: first applied seq not yet acknowledged
          inBulk,    \* inBulk[n]: n saw BULK_START and not yet BULK_END
          marked,    \* marked[n]: external entries not refreshed by the dump
          needSync   \* needSync[n]: n must (re)synchronize from the primary
receiverVars == <<expect, ackFrom, inBulk, marked, needSync>>

\* network and adversary
VARIABLES msgs,      \* bag of messages in flight
          stash      \* frames the adversary captured (it replays them later),
                     \*   each with the nodes that rebound its sender since
                     \*   (their replay windows start after it: spent for them)
netVars == <<msgs, stash>>

\* ghosts: only the properties read them
VARIABLES lastVer,   \* lastVer[c]: newest version c ever had (versions grow)
          born,      \* born[c]: version c had when last created
          owed,      \* owed[n]: <<epoch, c>>: n's ACK of a frame of that epoch's
                     \*   primary carrying c's current incarnation reached it
                     \*   (built from the frames the primary sent and the ACKs
                     \*   it received; c destroyed since: no longer owed)
          promoted,  \* promoted[n]: how n last became primary: ready (was it
                     \*   BACKUP), from (the epoch it followed), how (elected
                     \*   by VRRP, or reasserted)
          dead,      \* dead[n][c]: the newest version of c that n has seen
                     \*   destroyed in the stream it follows (0: none)
          dumped,    \* dumped[n]: n applied a whole dump since it last started
                     \*   or stopped being primary (what ready must mean; not
                     \*   only a ghost: the first such dump vouches for the
                     \*   kernel, ApplyState)
          overflow,  \* a send did not fit the network (a flood)
          failedAs,  \* failedAs[n]: role n had when it last failed, or "none"
          fenced,    \* some stale STATE/ALIVE was dropped (epoch fencing)
          repairs    \* how NACKs were answered: "retransmit", "resync"
ghostVars == <<lastVer, born, owed, promoted, dead, dumped, overflow, failedAs,
               fenced, repairs>>

vars == <<envVars, tableVars, epoch, channelVars, senderVars, receiverVars,
          netVars, ghostVars>>

\* ---------------------------------------------------------------------------
\* 3. Helpers
\* ---------------------------------------------------------------------------
Pair(a, b) == {a, b}
Reachable(a, b) == a # b /\ Pair(a, b) \in linkUp /\ Up(role[a]) /\ Up(role[b])
Peers(n) == Node \ {n}
Primaries == {n \in Node : role[n] = PRIMARY}

\* STATE and ALIVE are sealed for every peer; the others for their addressee.
Broadcast == {MSG_STATE, MSG_ALIVE}
MsgOf(t, s, d) ==
    [type |-> t, src |-> s, sess |-> sess[s], for |-> IF t \in Broadcast THEN 0 ELSE d,
     dst |-> d, term |-> epoch[s][1], enode |-> epoch[s][2], claims |-> FALSE,
     live |-> FALSE, seq |-> 0, conn |-> NoConn, ver |-> 0, start |-> FALSE, end |-> FALSE,
     lo |-> 0, hi |-> 0]
MsgEpoch(msg) == <<msg.term, msg.enode>>

\* The network holds at most MaxInFlight messages: what does not fit is lost,
\* and the model says so (overflow) rather than pruning the state.
Deliverable(S) == {msg \in S : Reachable(msg.src, msg.dst)}
Fits(bag, S) == BagCardinality(bag) + Cardinality(S) <= MaxInFlight
Put(bag, S) ==
    /\ msgs' = IF Fits(bag, S) THEN bag (+) SetToBag(S) ELSE bag
    /\ overflow' = (overflow \/ ~Fits(bag, S))

\* Sending on a link that is down, or to a node that is down, loses it.
Send(S) == Put(msgs, Deliverable(S))
Consume(msg) == msgs (-) SetToBag({msg})
\* Every copy of the messages in flight that satisfy P goes (a cut link, a
\* dead process: nothing of what was on its way arrives).
DropAll(P(_)) == [x \in {y \in DOMAIN msgs : ~P(y)} |-> msgs[x]]
ConsumeAndSend(msg, S) == Put(Consume(msg), Deliverable(S))
InFlight(n, m, t) == \E msg \in BagToSet(msgs) :
                        msg.src = n /\ msg.dst = m /\ msg.type = t

\* The channel: n accepts a frame only when it is sealed for n (or for every
\* peer) and comes from the session of its sender that n has bound. Frames
\* of an earlier session, or sealed for another node, change nothing; nor do
\* frames sent before n's handshake with their sender (Bind). The
\* implementation also drops a frame seen before (its replay window); the
\* model lets such duplicates through, which only makes the network worse.
Accepts(n, msg) == msg.for \in {0, n} /\ msg.sess = bound[n][msg.src]

AckWindow == 2

\* Timers are abstracted by their guards: a timer (retransmit, alive, resync
\* retry) fires only when what it waits for is not already in flight.

ToPeers(t, n) == {MsgOf(t, n, m) : m \in Peers(n)}
StateMsg(n, m, f) ==
    [MsgOf(MSG_STATE, n, m) EXCEPT !.seq = f.seq, !.conn = f.conn, !.ver = f.ver,
                               !.start = f.start, !.end = f.end]

\* The resend queue: a frame leaves when every live peer acknowledged it.
LiveAck(n, pa, pl) == {pa[m] : m \in {p \in Peers(n) : pl[p]}}
Trim(q, n, pa, pl) ==
    LET acks == LiveAck(n, pa, pl) IN
    IF acks = {} THEN <<>>
    ELSE LET low == CHOOSE a \in acks : \A b \in acks : a <= b
         IN SelectSeq(q, LAMBDA f : f.seq >= low)

\* Send one STATE frame to all peers. A full queue drops its oldest frame
\* (a dead or slow backup never blocks the primary nor grows its memory).
EmitFrame(n, f) ==
    /\ queue' = [queue EXCEPT ![n] = Append(IF Len(queue[n]) >= QueueBound
                                             THEN Tail(queue[n])
                                             ELSE queue[n], f)]
    /\ nextSeq' = [nextSeq EXCEPT ![n] = @ + 1]
    /\ Send({StateMsg(n, m, f) : m \in Peers(n)})

NewFrame(n, c, v) == [seq |-> nextSeq[n], conn |-> c, ver |-> v,
                      start |-> FALSE, end |-> FALSE]

\* A full resync for the peers: (re)start the bulk dump unless one is about
\* to start anyway (its BULK_START is what a lagging receiver jumps to).
StartBulk(n) == bulk' = [bulk EXCEPT ![n] = "start"]

\* One dump per need. For the sender, a peer either follows the stream, or
\* waits for a dump (behind): for the next BULK_START (resume = NoSeq) or for
\* the one sent at resume. Where it stands in the stream: the first seq it
\* still needs from the queue, NoSeq when only a dump helps.
Position(n, m) == IF behind[n][m] THEN resume[n][m] ELSE peerAck[n][m]
QueueFirst(n) == IF queue[n] = <<>> THEN nextSeq[n] ELSE Head(queue[n]).seq

\* A dump under way serves peer m, one it can still get whole: its BULK_START
\* is about to go out, or it went out and is still in the resend queue (what
\* m misses of the dump can be resent). Only then is no new dump needed.
DumpServes(n, b, r) ==   \* b, r: behind[n][m], resume[n][m]
    /\ b
    /\ IF r = NoSeq THEN bulk[n] = "start"
       ELSE queue[n] # <<>> /\ r >= Head(queue[n]).seq

\* Peer m can be repaired by a dump only: it joins the one that serves it,
\* else it waits for the next BULK_START and a dump (re)starts.
NeedsDump(n, m, b, r) ==
    IF DumpServes(n, b, r)
    THEN /\ behind' = [behind EXCEPT ![n][m] = b]
         /\ resume' = [resume EXCEPT ![n][m] = r]
         /\ UNCHANGED bulk
    ELSE /\ behind' = [behind EXCEPT ![n][m] = TRUE]
         /\ resume' = [resume EXCEPT ![n][m] = NoSeq]
         /\ IF bulk[n] = "start" THEN UNCHANGED bulk ELSE StartBulk(n)

\* No peer waits for a dump of n, none acknowledged a moment ago.
ResetPeers(n) ==
    /\ behind' = [behind EXCEPT ![n] = [m \in Node |-> FALSE]]
    /\ resume' = [resume EXCEPT ![n] = [m \in Node |-> NoSeq]]
    /\ ackedRecently' = [ackedRecently EXCEPT ![n] = [m \in Node |-> FALSE]]

\* Reset the sender side (a node that stops being primary).
ClearSender(n) ==
    /\ queue' = [queue EXCEPT ![n] = <<>>]
    /\ bulk' = [bulk EXCEPT ![n] = "idle"]
    /\ todo' = [todo EXCEPT ![n] = {}]
    /\ dirty' = [dirty EXCEPT ![n] = {}]
    /\ ResetPeers(n)


\* The receiver's stream state for a new epoch of its peer.
ResetReceiver(n) ==
    /\ expect' = [expect EXCEPT ![n] = 0]
    /\ ackFrom' = [ackFrom EXCEPT ![n] = 0]
    /\ inBulk' = [inBulk EXCEPT ![n] = FALSE]
    /\ marked' = [marked EXCEPT ![n] = {}]


\* ---------------------------------------------------------------------------
\* Initial state: every process just started (SYNCING, must sync), empty
\* tables, all links up, no epoch yet, VRRP all backups. The processes'
\* first handshakes are done (each bound the others' first session); a
\* process that restarts binds again (Bind).
\* ---------------------------------------------------------------------------
AllLinks == {Pair(a, b) : a, b \in Node} \ {{n} : n \in Node}
NotPromoted == [ready |-> FALSE, from |-> NoEpoch, how |-> "none"]

Init ==
    /\ role = [n \in Node |-> SYNCING]
    /\ master = [n \in Node |-> FALSE]
    /\ linkUp = AllLinks
    /\ env = [fail |-> 0, ha |-> 0, cut |-> 0, loss |-> 0, dup |-> 0, replay |-> 0,
              restart |-> 0]
    /\ kernel = [n \in Node |-> EmptyTable]
    /\ internal = [n \in Node |-> EmptyTable]
    /\ external = [n \in Node |-> EmptyTable]
    /\ epoch = [n \in Node |-> NoEpoch]
    /\ sess = [n \in Node |-> 1]
    /\ bound = [n \in Node |-> [m \in Node |-> IF m = n THEN 0 ELSE 1]]
    /\ nextSeq = [n \in Node |-> 0]
    /\ queue = [n \in Node |-> <<>>]
    /\ peerAck = [n \in Node |-> [m \in Node |-> 0]]
    /\ peerLive = [n \in Node |-> [m \in Node |-> TRUE]]
    /\ bulk = [n \in Node |-> "idle"]
    /\ todo = [n \in Node |-> {}]
    /\ dirty = [n \in Node |-> {}]
    /\ behind = [n \in Node |-> [m \in Node |-> FALSE]]
    /\ resume = [n \in Node |-> [m \in Node |-> NoSeq]]
    /\ ackedRecently = [n \in Node |-> [m \in Node |-> FALSE]]
    /\ expect = [n \in Node |-> 0]
    /\ ackFrom = [n \in Node |-> 0]
    /\ inBulk = [n \in Node |-> FALSE]
    /\ marked = [n \in Node |-> {}]
    /\ needSync = [n \in Node |-> TRUE]
    /\ msgs = EmptyBag
    /\ stash = {}
    /\ lastVer = [c \in Conn |-> 0]
    /\ born = [c \in Conn |-> 0]
    /\ owed = [n \in Node |-> {}]
    /\ promoted = [n \in Node |-> NotPromoted]
    /\ dead = [n \in Node |-> [c \in Conn |-> 0]]
    /\ dumped = [n \in Node |-> FALSE]
    /\ overflow = FALSE
    /\ failedAs = [n \in Node |-> "none"]
    /\ fenced = FALSE
    /\ repairs = {}

\* ---------------------------------------------------------------------------
\* 4. The HA manager (environment): keepalived, one VRRP instance per node
\* ---------------------------------------------------------------------------
\* Whose VRRP adverts n hears: with SplitBrain, VRRP shares the sync links (a
\* cut link splits it too: two masters); without, VRRP never splits.
Hears(n, m) == IF SplitBrain THEN Reachable(n, m) ELSE Up(role[m])

\* keepalived's track script (`snep ctl ready`): in sync. A node that is not
\* ready loses every election against one that is (a priority penalty).
Ready(n) == role[n] = BACKUP

HelloClaim(n, e) ==
    {[MsgOf(MSG_HELLO, n, m) EXCEPT !.term = e[1], !.enode = e[2], !.claims = TRUE] :
        m \in Peers(n)}

\* n follows a live primary: the owner of its newest epoch is primary of it
\* and n hears it (the implementation: it heard a claim of that epoch lately).
FollowsLive(n) ==
    LET o == epoch[n][2]
    IN o \in Peers(n) /\ role[o] = PRIMARY /\ epoch[o] = epoch[n] /\ Reachable(n, o)

\* What n says of its newest epoch in a HELLO to m.
HelloNews(n, m) ==
    [MsgOf(MSG_HELLO, n, m) EXCEPT !.claims = (role[n] = PRIMARY), !.live = FollowsLive(n)]

\* A primary's own sequence space from 0, its first dump due ("start").
OwnStream(n) ==
    /\ nextSeq' = [nextSeq EXCEPT ![n] = 0]
    /\ queue' = [queue EXCEPT ![n] = <<>>]
    /\ peerAck' = [peerAck EXCEPT ![n] = [m \in Node |-> 0]]
    /\ bulk' = [bulk EXCEPT ![n] = "start"]
    /\ todo' = [todo EXCEPT ![n] = {}]
    /\ dirty' = [dirty EXCEPT ![n] = {}]
    /\ ResetPeers(n)

\* Become primary (snep's promote): commit the external cache into the
\* kernel (and empty it: what it held is the kernel's now, and a stale copy
\* would come back at a later commit), take the new epoch (newest term + 1,
\* own id), resync the internal cache from a kernel dump, send HELLO (a
\* claim), bulk send to all peers.
BecomePrimary(n, how) ==
    LET committed == [c \in Conn |-> IF external[n][c] # 0
                                     THEN external[n][c]
                                     ELSE kernel[n][c]]
        e == <<epoch[n][1] + 1, n>>
    IN /\ kernel' = [kernel EXCEPT ![n] = committed]
       /\ internal' = [internal EXCEPT ![n] = committed]
       /\ external' = [external EXCEPT ![n] = EmptyTable]
       /\ epoch' = [epoch EXCEPT ![n] = e]
       /\ Send(HelloClaim(n, e))
       /\ role' = [role EXCEPT ![n] = PRIMARY]
       /\ promoted' = [promoted EXCEPT ![n] = [ready |-> role[n] = BACKUP, from |-> epoch[n],
                                                how |-> how]]
       /\ OwnStream(n)
       /\ needSync' = [needSync EXCEPT ![n] = FALSE]
       /\ ResetReceiver(n)

\* Stop being primary (or a backup told so): the kernel's entries get short
\* timeouts (KernelExpire), the node requests a resync and must complete a
\* dump before it is ready again.
StepBack(n, r) ==
    /\ role' = [role EXCEPT ![n] = r]
    /\ needSync' = [needSync EXCEPT ![n] = TRUE]
    /\ dumped' = [dumped EXCEPT ![n] = FALSE]
    /\ ClearSender(n)

\* VRRP elects n master (keepalived's notify master: snep promotes): n hears
\* no master, and n is ready or no ready candidate is heard.
Promote(n) ==
    /\ role[n] \in {SYNCING, BACKUP} /\ ~master[n]
    /\ epoch[n][1] < MaxTerm
    /\ \A m \in Peers(n) : master[m] => ~Hears(n, m)
    /\ Ready(n) \/ ~\E m \in Peers(n) : Ready(m) /\ ~master[m] /\ Hears(n, m)
    /\ master' = [master EXCEPT ![n] = TRUE]
    /\ BecomePrimary(n, "elected")
    /\ UNCHANGED <<linkUp, env, channelVars, peerLive, stash, lastVer,
                   born, owed, dead, dumped, failedAs, fenced, repairs>>

\* Two masters hear each other (a split VRRP heals): the one with the lower
\* priority goes backup (keepalived's notify backup). Either may be it.
Resign(n) ==
    /\ master[n]
    /\ \E m \in Peers(n) : master[m] /\ Hears(n, m)
    /\ master' = [master EXCEPT ![n] = FALSE]
    /\ IF role[n] = PRIMARY THEN StepBack(n, SYNCING)
       ELSE UNCHANGED <<role, needSync, dumped, queue, bulk, todo, dirty, peerVars>>
    /\ UNCHANGED <<linkUp, env, tableVars, epoch, channelVars, nextSeq, peerAck,
                   peerLive, expect, ackFrom, inBulk, marked, netVars, lastVer,
                   born, owed, promoted, dead, overflow, failedAs, fenced, repairs>>

\* keepalived says backup (from master or fault) for another reason.
Demote(n) ==
    /\ role[n] \in {PRIMARY, FAULT}
    /\ env.ha < MaxHA
    /\ env' = [env EXCEPT !.ha = @ + 1]
    /\ master' = [master EXCEPT ![n] = FALSE]
    /\ StepBack(n, SYNCING)
    /\ UNCHANGED <<linkUp, tableVars, epoch, channelVars, nextSeq, peerAck,
                   peerLive, expect, ackFrom, inBulk, marked, netVars, lastVer,
                   born, owed, promoted, dead, overflow, failedAs, fenced, repairs>>

\* keepalived says fault: not primary, keeps receiving, not ready.
Fault(n) ==
    /\ role[n] \in {PRIMARY, SYNCING, BACKUP}
    /\ env.ha < MaxHA
    /\ env' = [env EXCEPT !.ha = @ + 1]
    /\ master' = [master EXCEPT ![n] = FALSE]
    /\ StepBack(n, FAULT)
    /\ UNCHANGED <<linkUp, tableVars, epoch, channelVars, nextSeq, peerAck,
                   peerLive, expect, ackFrom, inBulk, marked, netVars, lastVer,
                   born, owed, promoted, dead, overflow, failedAs, fenced, repairs>>

\* The node dies (snep and keepalived): caches and queues are gone; the
\* kernel table and the persisted epoch stay. Messages to it are lost.
Fail(n) ==
    /\ Up(role[n])
    /\ env.fail < MaxFail
    /\ env' = [env EXCEPT !.fail = @ + 1]
    /\ role' = [role EXCEPT ![n] = DOWN]
    /\ master' = [master EXCEPT ![n] = FALSE]
    /\ internal' = [internal EXCEPT ![n] = EmptyTable]
    /\ external' = [external EXCEPT ![n] = EmptyTable]
    /\ ClearSender(n)
    /\ ResetReceiver(n)
    /\ needSync' = [needSync EXCEPT ![n] = FALSE]
    /\ msgs' = DropAll(LAMBDA msg : msg.dst = n)
    /\ failedAs' = [failedAs EXCEPT ![n] = role[n]]
    /\ dumped' = [dumped EXCEPT ![n] = FALSE]
    /\ UNCHANGED <<linkUp, kernel, epoch, channelVars, nextSeq, peerAck,
                   peerLive, stash, lastVer, born, owed, promoted, dead, overflow,
                   fenced, repairs>>

\* Process start: a new session (no peer's session bound yet), internal cache
\* from a kernel dump, external cache empty, SYNCING. Its first
\* RequestResync is the start's HELLO + RESYNC_REQUEST.
Recover(n) ==
    /\ role[n] = DOWN
    /\ role' = [role EXCEPT ![n] = SYNCING]
    /\ sess' = [sess EXCEPT ![n] = @ + 1]
    /\ bound' = [bound EXCEPT ![n] = [m \in Node |-> 0]]
    /\ internal' = [internal EXCEPT ![n] = kernel[n]]
    /\ external' = [external EXCEPT ![n] = EmptyTable]
    /\ needSync' = [needSync EXCEPT ![n] = TRUE]
    /\ dead' = [dead EXCEPT ![n] = [c \in Conn |-> 0]]
    /\ ResetReceiver(n)
    /\ UNCHANGED <<master, linkUp, env, kernel, epoch, senderVars, netVars, lastVer,
                   born, owed, promoted, dumped, overflow, failedAs, fenced, repairs>>

\* snep's own takeover: keepalived made n master (its last word), n is not
\* primary (a newer primary fenced it, since gone) and hears of no live
\* primary, neither from it nor from a node that follows it.
HearsOfPrimary(n) ==
    \E p \in Primaries :
        \/ Reachable(n, p)
        \/ \E b \in Peers(n) : Reachable(n, b) /\ epoch[b] = epoch[p] /\ FollowsLive(b)

Reassert(n) ==
    /\ master[n] /\ role[n] \in {SYNCING, BACKUP}
    /\ epoch[n][1] < MaxTerm
    /\ ~HearsOfPrimary(n)
    /\ BecomePrimary(n, "reasserted")
    /\ UNCHANGED <<master, linkUp, env, channelVars, peerLive, stash,
                   lastVer, born, owed, dead, dumped, failedAs, fenced, repairs>>

\* ---------------------------------------------------------------------------
\* 5. The network, the adversary, the channel
\* ---------------------------------------------------------------------------
LinkDown(a, b) ==
    /\ a < b /\ Pair(a, b) \in linkUp
    /\ env.cut < MaxCut
    /\ env' = [env EXCEPT !.cut = @ + 1]
    /\ linkUp' = linkUp \ {Pair(a, b)}
    /\ msgs' = DropAll(LAMBDA msg : {msg.src, msg.dst} = Pair(a, b))
    /\ UNCHANGED <<role, master, tableVars, epoch, channelVars, senderVars,
                   receiverVars, stash, ghostVars>>

LinkUp(a, b) ==
    /\ a < b /\ Pair(a, b) \notin linkUp
    /\ linkUp' = linkUp \cup {Pair(a, b)}
    /\ UNCHANGED <<role, master, env, tableVars, epoch, channelVars, senderVars,
                   receiverVars, netVars, ghostVars>>

LoseMsg ==
    /\ env.loss < MaxLoss
    /\ \E msg \in BagToSet(msgs) : msgs' = Consume(msg)
    /\ env' = [env EXCEPT !.loss = @ + 1]
    /\ UNCHANGED <<role, master, linkUp, tableVars, epoch, channelVars, senderVars,
                   receiverVars, stash, ghostVars>>

DuplicateMsg ==
    /\ env.dup < MaxDup
    /\ BagCardinality(msgs) < MaxInFlight
    /\ \E msg \in BagToSet(msgs) : msgs' = msgs (+) SetToBag({msg})
    /\ env' = [env EXCEPT !.dup = @ + 1]
    /\ UNCHANGED <<role, master, linkUp, tableVars, epoch, channelVars, senderVars,
                   receiverVars, stash, ghostVars>>

\* The primary (re)starts a dump on its own: its frames of sync.bulk_mtu (IP-
\* fragmented) do not reach a peer that is there, so the path drops them, and
\* the dump starts again in frames of the stream's MTU (snep.fsm.sender). An
\* answer to losses: never more of them than the network loses messages.
RestartBulk(n) ==
    /\ role[n] = PRIMARY
    /\ bulk[n] # "start"
    /\ env.restart < MaxLoss
    /\ env' = [env EXCEPT !.restart = @ + 1]
    /\ StartBulk(n)
    /\ UNCHANGED <<role, master, linkUp, tableVars, epoch, channelVars, nextSeq, queue,
                   peerAck, peerLive, todo, dirty, peerVars, receiverVars, netVars,
                   ghostVars>>

\* The adversary (no key): it keeps a copy of any frame it sees, and later
\* sends it to any node, from whatever address (sessions, epochs and
\* processes may have changed meanwhile). It cannot make a frame for
\* another recipient or session than the one it was sealed for.
Capture ==
    /\ Cardinality(stash) < MaxReplay
    /\ \E msg \in BagToSet(msgs) :
          /\ ~\E e \in stash : e.msg = msg
          /\ stash' = stash \cup {[msg |-> msg, spent |-> {}]}
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, senderVars, receiverVars,
                   msgs, ghostVars>>

Replay ==
    /\ env.replay < MaxReplay
    /\ BagCardinality(msgs) < MaxInFlight
    /\ \E e \in stash, d \in Node :
          /\ d # e.msg.src /\ d \notin e.spent /\ Up(role[d])
          /\ msgs' = msgs (+) SetToBag({[e.msg EXCEPT !.dst = d]})
    /\ env' = [env EXCEPT !.replay = @ + 1]
    /\ UNCHANGED <<role, master, linkUp, tableVars, epoch, channelVars, senderVars,
                   receiverVars, stash, ghostVars>>

\* A frame the channel refuses (an earlier session, or sealed for another
\* node): dropped, counted, nothing else changes.
Reject(n) ==
    /\ Up(role[n])
    /\ \E msg \in BagToSet(msgs) :
          /\ msg.dst = n /\ ~Accepts(n, msg)
          /\ msgs' = Consume(msg)
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, senderVars, receiverVars,
                   stash, ghostVars>>

\* ---------------------------------------------------------------------------
\* 6. Traffic on the primary, and the kernels of the others
\* ---------------------------------------------------------------------------
\* The kernel reports its events one at a time: the next change happens once
\* the previous one was notified (the model keeps one pending event).
Settled(n) == internal[n] = kernel[n]

ConnNew(n, c) ==
    /\ role[n] = PRIMARY /\ Settled(n) /\ kernel[n][c] = 0 /\ lastVer[c] < MaxVersion
    /\ kernel' = [kernel EXCEPT ![n][c] = lastVer[c] + 1]
    /\ lastVer' = [lastVer EXCEPT ![c] = @ + 1]
    /\ born' = [born EXCEPT ![c] = lastVer[c] + 1]
    /\ UNCHANGED <<envVars, internal, external, epoch, channelVars, senderVars,
                   receiverVars, netVars, owed, promoted, dead, dumped, overflow,
                   failedAs, fenced, repairs>>

ConnUpdate(n, c) ==
    /\ role[n] = PRIMARY /\ Settled(n) /\ kernel[n][c] # 0 /\ lastVer[c] < MaxVersion
    /\ kernel' = [kernel EXCEPT ![n][c] = lastVer[c] + 1]
    /\ lastVer' = [lastVer EXCEPT ![c] = @ + 1]
    /\ UNCHANGED <<envVars, internal, external, epoch, channelVars, senderVars,
                   receiverVars, netVars, born, owed, promoted, dead, dumped,
                   overflow, failedAs, fenced, repairs>>

\* A destroyed connection is no longer owed to anyone; the primary has seen
\* this version die.
ConnDestroy(n, c) ==
    /\ role[n] = PRIMARY /\ Settled(n) /\ kernel[n][c] # 0
    /\ kernel' = [kernel EXCEPT ![n][c] = 0]
    /\ owed' = [m \in Node |-> {x \in owed[m] : x[2] # c}]
    /\ dead' = [dead EXCEPT ![n][c] = IF kernel[n][c] > @ THEN kernel[n][c] ELSE @]
    /\ UNCHANGED <<envVars, internal, external, epoch, channelVars, senderVars,
                   receiverVars, netVars, lastVer, born, promoted, dumped, overflow,
                   failedAs, fenced, repairs>>

\* On a node that is not primary, kernel entries time out (they got short
\* timeouts when it became backup): stale entries of a former primary go.
KernelExpire(n, c) ==
    /\ role[n] # PRIMARY /\ kernel[n][c] # 0
    /\ kernel' = [kernel EXCEPT ![n][c] = 0]
    /\ UNCHANGED <<envVars, internal, external, epoch, channelVars, senderVars,
                   receiverVars, netVars, ghostVars>>

\* ---------------------------------------------------------------------------
\* 7. The sender (a primary)
\* ---------------------------------------------------------------------------
\* A kernel event: the internal cache follows the kernel; the level decides
\* what is sent: strong every change, weak NEW and DESTROY, incremental marks
\* the connection dirty for the next flush.
Notify(n) ==
    /\ role[n] = PRIMARY
    /\ \E c \in Conn :
        /\ internal[n][c] # kernel[n][c]
        /\ internal' = [internal EXCEPT ![n][c] = kernel[n][c]]
        /\ LET crucial == internal[n][c] = 0 \/ kernel[n][c] = 0
           IN IF Level = "strong" \/ (Level = "weak" /\ crucial)
              THEN /\ EmitFrame(n, NewFrame(n, c, kernel[n][c]))
                   /\ UNCHANGED dirty
              ELSE /\ dirty' = [dirty EXCEPT ![n] =
                                   IF Level = "incremental" THEN @ \cup {c} ELSE @]
                   /\ UNCHANGED <<queue, nextSeq, msgs, overflow>>
    /\ UNCHANGED <<envVars, kernel, external, epoch, channelVars, peerAck, peerLive,
                   bulk, todo, peerVars, receiverVars, stash, lastVer, born, owed,
                   promoted, dead, dumped, failedAs, fenced, repairs>>

\* Incremental level: the period's flush sends the newest state of each
\* dirty connection (one frame per step).
FlushIncremental(n) ==
    /\ Level = "incremental"
    /\ role[n] = PRIMARY
    /\ \E c \in dirty[n] :
        /\ EmitFrame(n, NewFrame(n, c, internal[n][c]))
        /\ dirty' = [dirty EXCEPT ![n] = @ \ {c}]
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, peerAck, peerLive, bulk,
                   todo, peerVars, receiverVars, stash, lastVer, born, owed,
                   promoted, dead, dumped, failedAs, fenced, repairs>>

\* The dump is paced by a window of frames in flight, counted only for the
\* live peers the queue can still serve (Position at or after its first
\* frame): a peer that waits for this very dump does not hold it back (else
\* a lagging peer keeps the queue full and the dump it needs never starts).
\* The window is QueueBound (the implementation's bulk_window <= queue size).
Holding(n) == {Position(n, m) :
                  m \in {p \in Peers(n) : peerLive[n][p] /\ Position(n, p) >= QueueFirst(n)}}
InFlightFrames(n) ==
    IF Holding(n) = {} THEN 0
    ELSE nextSeq[n] - (CHOOSE a \in Holding(n) : \A b \in Holding(n) : a <= b)
BulkRoom(n) == InFlightFrames(n) < QueueBound

\* One step of the paced bulk dump. The first frame (BULK_START) snapshots
\* the internal cache's connections to send (every peer waiting for a dump
\* follows from it: resume); each goes with its value when its frame goes.
\* One destroyed since is skipped (its DESTROY went as an event of its own):
\* drop, the skipped ones taken along this step. The frame that leaves
\* nothing to send carries BULK_END; when only skipped ones are left, that is
\* an empty frame (an empty dump: one empty frame with both flags).
SendBulk(n) ==
    /\ role[n] = PRIMARY
    /\ bulk[n] # "idle"
    /\ BulkRoom(n)
    /\ LET first == bulk[n] = "start"
           left == IF first THEN Present(internal[n]) ELSE todo[n]
           gone == {c \in left : internal[n][c] = 0}
       IN /\ IF left \ gone = {}
             THEN /\ EmitFrame(n, [NewFrame(n, NoConn, 0) EXCEPT !.start = first,
                                                                !.end = TRUE])
                  /\ bulk' = [bulk EXCEPT ![n] = "idle"]
                  /\ todo' = [todo EXCEPT ![n] = {}]
             ELSE \E c \in left \ gone, drop \in SUBSET gone :
                  LET rest == left \ ({c} \cup drop) IN
                  /\ EmitFrame(n, [NewFrame(n, c, internal[n][c]) EXCEPT
                                     !.start = first, !.end = (rest = {})])
                  /\ bulk' = [bulk EXCEPT ![n] = IF rest = {} THEN "idle" ELSE "run"]
                  /\ todo' = [todo EXCEPT ![n] = rest]
          /\ IF first
             THEN resume' = [resume EXCEPT ![n] =
                               [m \in Node |-> IF behind[n][m] THEN nextSeq[n] ELSE @[m]]]
             ELSE UNCHANGED resume
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, peerAck, peerLive, dirty,
                   behind, ackedRecently, receiverVars, stash, lastVer, born, owed,
                   promoted, dead, dumped, failedAs, fenced, repairs>>

\* Retransmission timer: resend the queued frames a live, reachable peer the
\* queue serves has not acknowledged (a peer waiting for a dump: from its
\* BULK_START on). The timeout exceeds a round trip: not while frames to the
\* peer or acks from it are in flight. (A resent frame is sealed anew, for
\* every peer like the first copy: its sender's counter moved on.)
Unacked(n, m) ==
    IF Position(n, m) < QueueFirst(n) THEN {}
    ELSE {f \in {queue[n][i] : i \in 1..Len(queue[n])} : f.seq >= Position(n, m)}

Retransmit(n) ==
    /\ role[n] = PRIMARY
    /\ \E m \in Peers(n) :
        /\ peerLive[n][m] /\ Reachable(n, m)
        /\ ~InFlight(n, m, MSG_STATE) /\ ~InFlight(m, n, MSG_ACK)
        /\ Unacked(n, m) # {}
        /\ Send({StateMsg(n, m, f) : f \in Unacked(n, m)})
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, senderVars, receiverVars,
                   stash, lastVer, born, owed, promoted, dead, dumped, failedAs,
                   fenced, repairs>>

\* ALIVE on an idle channel (nothing to retransmit to that peer): carries the
\* next seq, so a receiver that missed the last frames detects the gap.
SendAlive(n) ==
    /\ role[n] = PRIMARY
    /\ LET idle == {m \in Peers(n) : Reachable(n, m) /\ ~InFlight(n, m, MSG_STATE)
                                     /\ ~InFlight(n, m, MSG_ALIVE)
                                     /\ ~(peerLive[n][m] /\ Unacked(n, m) # {})}
       IN /\ idle # {}
          /\ Send({[MsgOf(MSG_ALIVE, n, m) EXCEPT !.seq = nextSeq[n]] : m \in idle})
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, senderVars, receiverVars,
                   stash, lastVer, born, owed, promoted, dead, dumped, failedAs,
                   fenced, repairs>>

\* Receiving an epoch. A claim (STATE, ALIVE, a HELLO with claims: sent by
\* the primary of that epoch) newer than the newest seen is adopted
\* (persisted); a primary that hears one steps down (fenced) to SYNCING and
\* requests a resync; the receiver's stream restarts at 0 for the new epoch.
\* A newer epoch merely heard of (a HELLO's newest, from a node that is not
\* primary of it: a node that restarted, or was away) is adopted too, but a
\* primary does not step down for it: it takes a term above it (Retake), so a
\* live primary is never deposed by a node that is down or behind.
Newer(n, msg) == EpochLT(epoch[n], MsgEpoch(msg))
Stale(n, msg) == EpochLT(MsgEpoch(msg), epoch[n])

Receivable(n, m, t) ==
    {msg \in BagToSet(msgs) : msg.dst = n /\ msg.src = m /\ msg.type = t /\ Accepts(n, msg)}

\* Adopt a newer epoch; a primary steps down.
StepDown(n, e) ==
    /\ epoch' = [epoch EXCEPT ![n] = e]
    /\ role' = [role EXCEPT ![n] = IF @ = PRIMARY THEN SYNCING ELSE @]
    /\ needSync' = [needSync EXCEPT ![n] = @ \/ role[n] = PRIMARY]
    /\ dumped' = [dumped EXCEPT ![n] = @ /\ role[n] # PRIMARY]
    /\ dead' = [dead EXCEPT ![n] = [c \in Conn |-> 0]]
    /\ IF role[n] = PRIMARY THEN ClearSender(n)
       ELSE UNCHANGED <<queue, bulk, todo, dirty, peerVars>>
    /\ ResetReceiver(n)

\* m applied every frame before `after` (an ACK's end + 1, a NACK's start):
\* its acknowledged position moves, a moment ago; once it is past the
\* BULK_START m waited for, m follows the stream again.
Advance(n, m, after) ==
    IF after > peerAck[n][m]
    THEN /\ peerAck' = [peerAck EXCEPT ![n][m] = after]
         /\ ackedRecently' = [ackedRecently EXCEPT ![n][m] = TRUE]
         /\ IF behind[n][m] /\ resume[n][m] # NoSeq /\ after > resume[n][m]
            THEN /\ behind' = [behind EXCEPT ![n][m] = FALSE]
                 /\ resume' = [resume EXCEPT ![n][m] = NoSeq]
            ELSE UNCHANGED <<behind, resume>>
    ELSE UNCHANGED <<peerAck, peerVars>>

\* What an ACK of the frames fs makes owed to m (ghost): per connection, the
\* newest covered frame counts: a current incarnation the primary still
\* has is owed, a DESTROY (version 0) is not.
Owe(o, e, fs, n) ==
    LET conns == {f.conn : f \in fs} \ {NoConn}
        newest(c) == CHOOSE f \in fs : f.conn = c /\ \A g \in fs : g.conn = c => g.seq <= f.seq
        keeps(c) == newest(c).ver # 0 /\ kernel[n][c] # 0 /\ newest(c).ver >= born[c]
    IN {x \in o : x[1] # e \/ x[2] \notin conns} \cup {<<e, c>> : c \in {d \in conns : keeps(d)}}

\* ACK(lo, hi): m has applied every frame up to hi (cumulative). Frames that
\* every live peer acknowledged leave the queue. An ACK about another epoch's
\* stream (an earlier one of ours, or one we never had) changes nothing.
RecvAck(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_ACK) :
        /\ msgs' = Consume(msg)
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ IF role[n] = PRIMARY /\ MsgEpoch(msg) = epoch[n]
           THEN LET pa == [peerAck EXCEPT ![n][m] =
                              IF msg.hi + 1 > @ THEN msg.hi + 1 ELSE @]
                    pl == [peerLive EXCEPT ![n][m] = TRUE]
                    fs == {f \in {queue[n][i] : i \in 1..Len(queue[n])} :
                              msg.lo <= f.seq /\ f.seq <= msg.hi}
                IN /\ Advance(n, m, msg.hi + 1)
                   /\ queue' = [queue EXCEPT ![n] = Trim(@, n, pa[n], pl[n])]
                   /\ owed' = [owed EXCEPT ![m] = Owe(@, epoch[n], fs, n)]
           ELSE UNCHANGED <<peerAck, queue, peerVars, owed>>
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, nextSeq, bulk, todo, dirty,
                   receiverVars, stash, lastVer, born, promoted, dead, dumped,
                   overflow, failedAs, fenced, repairs>>

\* NACK(lo, hi) of the current stream. A start beyond what m acknowledged
\* acknowledges the frames before it (Advance). Then:
\* - a late copy (reordered, duplicated): lo is below what m acknowledged a
\*   moment ago, not 0 (a receiver that started over NACKs from 0), no HELLO
\*   since, and the queue no longer holds it: only the frames from the
\*   acknowledged position on are resent, never a dump;
\* - m waits for a dump that serves it: nothing before that BULK_START is of
\*   use to it: the frames from it to hi are resent (none when hi is before
\*   it, or it is yet to be sent); no new dump (m joined it);
\* - lo older than the queue holds: only a dump repairs it (NeedsDump);
\* - else: retransmit lo..hi from the queue.
\* A NACK about another epoch's stream changes nothing.
RecvNack(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_NACK) :
        LET held == {queue[n][i] : i \in 1..Len(queue[n])}
            serve == role[n] = PRIMARY /\ MsgEpoch(msg) = epoch[n]
            ack == peerAck[n][m]
            adv == msg.lo > ack
            \* whether m waits for a dump, and from where, after Advance
            b == behind[n][m] /\ ~(adv /\ resume[n][m] # NoSeq /\ msg.lo > resume[n][m])
            r == IF b THEN resume[n][m] ELSE NoSeq
            inQueue(s) == queue[n] # <<>> /\ s >= Head(queue[n]).seq
            late == ~adv /\ msg.lo # 0 /\ msg.lo < ack /\ ~inQueue(msg.lo)
                    /\ ackedRecently[n][m]
            first == IF late THEN ack ELSE msg.lo
            Resend(lo) == ConsumeAndSend(msg, {StateMsg(n, m, f) :
                              f \in {g \in held : lo <= g.seq /\ g.seq <= msg.hi}})
        IN
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ IF ~serve
           THEN /\ msgs' = Consume(msg)
                /\ UNCHANGED <<bulk, peerAck, peerVars, repairs, overflow>>
           ELSE /\ peerAck' = [peerAck EXCEPT ![n][m] = IF adv THEN msg.lo ELSE @]
                /\ ackedRecently' = [ackedRecently EXCEPT ![n][m] = @ \/ adv]
                /\ IF late /\ first > msg.hi
                   THEN /\ msgs' = Consume(msg)
                        /\ UNCHANGED <<behind, resume, bulk, repairs, overflow>>
                   ELSE IF DumpServes(n, b, r)
                   THEN /\ behind' = [behind EXCEPT ![n][m] = b]
                        /\ resume' = [resume EXCEPT ![n][m] = r]
                        /\ UNCHANGED bulk
                        /\ IF r = NoSeq \/ r > msg.hi
                           THEN /\ msgs' = Consume(msg)
                                /\ UNCHANGED <<repairs, overflow>>
                           ELSE /\ Resend(IF r > first THEN r ELSE first)
                                /\ repairs' = repairs \cup {"retransmit"}
                   ELSE IF ~inQueue(first)
                   THEN /\ msgs' = Consume(msg)
                        /\ NeedsDump(n, m, b, r)
                        /\ repairs' = repairs \cup {"resync"}
                        /\ UNCHANGED overflow
                   ELSE /\ Resend(first)
                        /\ behind' = [behind EXCEPT ![n][m] = b]
                        /\ resume' = [resume EXCEPT ![n][m] = r]
                        /\ UNCHANGED bulk
                        /\ repairs' = repairs \cup {"retransmit"}
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, nextSeq, queue, todo,
                   dirty, receiverVars, stash, lastVer, born, owed, promoted, dead,
                   dumped, failedAs, fenced>>

\* RESYNC_REQUEST: the primary answers with a bulk dump (the requester may
\* not know the newest epoch yet; the dump tells it), unless one under way
\* serves the requester (NeedsDump). Its epoch is not acted upon.
RecvResyncRequest(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_RESYNC) :
        /\ msgs' = Consume(msg)
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ IF role[n] = PRIMARY
           THEN NeedsDump(n, m, behind[n][m], resume[n][m])
           ELSE UNCHANGED <<bulk, behind, resume>>
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, nextSeq, queue, peerAck,
                   todo, dirty, ackedRecently, receiverVars, stash, ghostVars>>

\* The retransmit timeout passes: what m acknowledged is no longer "a moment
\* ago" (a NACK below it may now come from a receiver that started over, and
\* is answered as any other). A timer: weakly fair.
AckAges(n, m) ==
    /\ ackedRecently[n][m]
    /\ ackedRecently' = [ackedRecently EXCEPT ![n][m] = FALSE]
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, nextSeq, queue, peerAck,
                   peerLive, bulk, todo, dirty, behind, resume, receiverVars,
                   netVars, ghostVars>>

\* A peer silent for the dead timeout: its acks no longer hold the queue.
\* (The model lets it fire only when the peer really is unreachable.)
PeerTimeout(n, m) ==
    /\ role[n] = PRIMARY
    /\ m # n /\ peerLive[n][m]
    /\ ~Reachable(n, m)
    /\ LET pl == [peerLive EXCEPT ![n][m] = FALSE]
       IN /\ peerLive' = pl
          /\ queue' = [queue EXCEPT ![n] = Trim(@, n, peerAck[n], pl[n])]
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, nextSeq, peerAck, bulk,
                   todo, dirty, peerVars, receiverVars, netVars, ghostVars>>

\* ---------------------------------------------------------------------------
\* 8. The receiver (a non-primary)
\* ---------------------------------------------------------------------------
\* Apply one in-order STATE frame to the external cache. BULK_START marks
\* every external entry, the dump refreshes them, BULK_END sweeps the ones
\* still marked and makes a SYNCING node ready (BACKUP). A BULK_START ahead
\* of the expected seq is applied too: the dump supersedes the missed frames.
\* What the stream removes (a DESTROY, a sweep) leaves the node's kernel too:
\* a backup keeps no entry its primary says is gone (ghost: dead). The first
\* whole dump since the node became a backup (~dumped) vouches for its kernel
\* (VouchKernel): what the dump confirms takes the primary's state, the rest
\* (left from an earlier life, e.g. connections reset while it was away) goes.
Applied(n, msg, r0) ==
    LET ext0 == external[n]
        mk0 == IF msg.start THEN Present(ext0) ELSE r0.marked
        ib == msg.start \/ r0.inBulk
        ext1 == IF msg.conn = NoConn THEN ext0
                ELSE [ext0 EXCEPT ![msg.conn] = msg.ver]
        mk1 == mk0 \ {msg.conn}
        sweep == msg.end /\ ib
    IN IF sweep THEN [c \in Conn |-> IF c \in mk1 THEN 0 ELSE ext1[c]] ELSE ext1

ApplyState(n, msg, r0) ==
    LET mk0 == IF msg.start THEN Present(external[n]) ELSE r0.marked
        ib == msg.start \/ r0.inBulk
        sweep == msg.end /\ ib
        ext2 == Applied(n, msg, r0)
        gone == {c \in Present(external[n]) : ext2[c] = 0}
        vouch == sweep /\ ~r0.dumped
    IN /\ external' = [external EXCEPT ![n] = ext2]
       /\ kernel' = [kernel EXCEPT ![n] = [c \in Conn |->
                      IF vouch THEN (IF @[c] # 0 THEN ext2[c] ELSE 0)
                      ELSE IF c \in gone THEN 0 ELSE @[c]]]
       /\ dead' = [dead EXCEPT ![n] = [c \in Conn |->
                      IF c \in gone /\ external[n][c] > r0.dead[c] THEN external[n][c]
                      ELSE r0.dead[c]]]
       /\ marked' = [marked EXCEPT ![n] = IF sweep THEN {} ELSE mk0 \ {msg.conn}]
       /\ inBulk' = [inBulk EXCEPT ![n] = ib /\ ~sweep]
       /\ expect' = [expect EXCEPT ![n] = msg.seq + 1]
       /\ needSync' = [needSync EXCEPT ![n] = IF sweep THEN FALSE ELSE r0.needSync]
       /\ dumped' = [dumped EXCEPT ![n] = r0.dumped \/ sweep]
       /\ role' = [role EXCEPT ![n] = IF sweep /\ r0.role = SYNCING THEN BACKUP
                                       ELSE r0.role]

\* The ack delay: when no further frame of the stream is in flight, the frames
\* applied and not yet acknowledged are acknowledged at once (af..ex-1).
AckOnPause(n, m, msg, af, ex) ==
    LET rest == Consume(msg)
        pause == ~\E x \in BagToSet(rest) :
                     x.src = m /\ x.dst = n /\ x.type = MSG_STATE
        ack == [MsgOf(MSG_ACK, n, m) EXCEPT !.term = msg.term, !.enode = msg.enode,
                                            !.lo = af, !.hi = ex - 1]
    IN IF pause /\ af < ex
       THEN /\ Put(rest, Deliverable({ack}))
            /\ ackFrom' = [ackFrom EXCEPT ![n] = ex]
       ELSE /\ msgs' = rest
            /\ UNCHANGED overflow
            /\ ackFrom' = [ackFrom EXCEPT ![n] = af]

\* STATE: strictly in order; a gap is dropped and NACKed; a duplicate is
\* dropped and re-acknowledged (the sender retransmits when our ACK got
\* lost); a stale epoch's frame is dropped, never applied.
RecvState(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_STATE) :
        \* r0: the receiver after adopting a newer epoch (if any)
        LET adopt == Newer(n, msg)
            wasPrimary == adopt /\ role[n] = PRIMARY
            r0 == [expect |-> IF adopt THEN 0 ELSE expect[n],
                   ackFrom |-> IF adopt THEN 0 ELSE ackFrom[n],
                   role |-> IF wasPrimary THEN SYNCING ELSE role[n],
                   needSync |-> needSync[n] \/ wasPrimary,
                   dumped |-> dumped[n] /\ ~wasPrimary,
                   dead |-> IF adopt THEN [c \in Conn |-> 0] ELSE dead[n],
                   inBulk |-> IF adopt THEN FALSE ELSE inBulk[n],
                   marked |-> IF adopt THEN {} ELSE marked[n]]
        IN
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ epoch' = [epoch EXCEPT ![n] = IF adopt THEN MsgEpoch(msg) ELSE @]
        /\ IF wasPrimary THEN ClearSender(n)
           ELSE UNCHANGED <<queue, bulk, todo, dirty, peerVars>>
        /\ IF Stale(n, msg) \/ (role[n] = PRIMARY /\ ~adopt)
           THEN \* fenced: never applied; the stale sender is told the newest
                /\ ConsumeAndSend(msg, {x \in {HelloNews(n, m)} : ~InFlight(n, m, MSG_HELLO)})
                /\ fenced' = (fenced \/ Stale(n, msg))
                /\ UNCHANGED <<role, tableVars, receiverVars, dead, dumped>>
           ELSE IF msg.seq = r0.expect \/ (msg.start /\ msg.seq > r0.expect)
           THEN /\ ApplyState(n, msg, r0)
                /\ AckOnPause(n, m, msg,
                               IF msg.seq > r0.expect THEN msg.seq ELSE r0.ackFrom,
                               msg.seq + 1)
                /\ UNCHANGED <<internal, fenced>>
           ELSE IF msg.seq > r0.expect
           THEN \* gap: drop it, NACK what is missing
                /\ ConsumeAndSend(msg, {x \in {[MsgOf(MSG_NACK, n, m) EXCEPT
                        !.term = msg.term, !.enode = msg.enode,
                        !.lo = r0.expect, !.hi = msg.seq - 1]} :
                        ~InFlight(n, m, MSG_NACK)})
                /\ expect' = [expect EXCEPT ![n] = r0.expect]
                /\ ackFrom' = [ackFrom EXCEPT ![n] = r0.ackFrom]
                /\ role' = [role EXCEPT ![n] = r0.role]
                /\ needSync' = [needSync EXCEPT ![n] = r0.needSync]
                /\ dumped' = [dumped EXCEPT ![n] = r0.dumped]
                /\ dead' = [dead EXCEPT ![n] = r0.dead]
                /\ inBulk' = [inBulk EXCEPT ![n] = r0.inBulk]
                /\ marked' = [marked EXCEPT ![n] = r0.marked]
                /\ UNCHANGED <<tableVars, fenced>>
           ELSE \* duplicate: drop, acknowledge again from its seq
                /\ AckOnPause(n, m, msg,
                               IF msg.seq < r0.ackFrom THEN msg.seq ELSE r0.ackFrom,
                               r0.expect)
                /\ UNCHANGED <<role, tableVars, expect, inBulk, marked, needSync,
                               dead, dumped, fenced>>
    /\ UNCHANGED <<master, linkUp, env, channelVars, nextSeq, peerAck, stash,
                   lastVer, born, owed, promoted, failedAs, repairs>>

\* ALIVE carries the primary's next seq: a receiver that is behind NACKs.
RecvAlive(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_ALIVE) :
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ IF Stale(n, msg)
           THEN /\ ConsumeAndSend(msg, {x \in {HelloNews(n, m)} : ~InFlight(n, m, MSG_HELLO)})
                /\ fenced' = TRUE
                /\ UNCHANGED <<epoch, role, needSync, dumped, dead, queue, bulk, todo,
                               dirty, peerVars, receiverVars>>
           ELSE LET adopt == Newer(n, msg)
                    exp == IF adopt THEN 0 ELSE expect[n]
                IN /\ IF adopt THEN StepDown(n, MsgEpoch(msg))
                      ELSE UNCHANGED <<epoch, role, needSync, dumped, dead, queue,
                                       bulk, todo, dirty, peerVars, receiverVars>>
                   /\ IF (role[n] # PRIMARY \/ adopt) /\ msg.seq > exp
                      THEN ConsumeAndSend(msg, {x \in {[MsgOf(MSG_NACK, n, m) EXCEPT
                                  !.term = msg.term, !.enode = msg.enode,
                                  !.lo = exp, !.hi = msg.seq - 1]} :
                                  ~InFlight(n, m, MSG_NACK)})
                      ELSE /\ msgs' = Consume(msg)
                           /\ UNCHANGED overflow
                   /\ UNCHANGED fenced
    /\ UNCHANGED <<master, linkUp, env, tableVars, channelVars, nextSeq, peerAck,
                   stash, lastVer, born, owed, promoted, failedAs, repairs>>

\* The ack window: after AckWindow applied frames, ACK(first, last) to the
\* primary of the newest epoch (the ack delay is AckOnPause in RecvState).
SendAck(n, m) ==
    /\ role[n] \in Receiving
    /\ epoch[n][2] = m /\ m # n
    /\ expect[n] - ackFrom[n] >= AckWindow
    /\ Send({[MsgOf(MSG_ACK, n, m) EXCEPT !.lo = ackFrom[n], !.hi = expect[n] - 1]})
    /\ ackFrom' = [ackFrom EXCEPT ![n] = expect[n]]
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, senderVars, expect, inBulk,
                   marked, needSync, stash, lastVer, born, owed, promoted, dead,
                   dumped, failedAs, fenced, repairs>>

\* A node that must (re)synchronize asks the primary it knows (or everyone,
\* when it knows none) for a bulk dump; retried when no request is in flight
\* and no frame of the primary is on its way.
RequestResync(n, m) ==
    /\ role[n] \in Receiving
    /\ needSync[n] /\ ~inBulk[n]
    /\ m # n
    /\ epoch[n][2] \in {m, 0, n}
    /\ Reachable(n, m)
    /\ ~InFlight(n, m, MSG_RESYNC) /\ ~InFlight(m, n, MSG_STATE)
    /\ Send({MsgOf(MSG_RESYNC, n, m)})
    /\ UNCHANGED <<envVars, tableVars, epoch, channelVars, senderVars, receiverVars,
                   stash, lastVer, born, owed, promoted, dead, dumped, failedAs,
                   fenced, repairs>>

\* n hears of epoch e from a peer (a HELLO: in the handshake, or any other):
\* claims, the peer is primary of e; live, the peer follows a primary of e it
\* heard lately. Newer and vouched for (claims or live): adopted, and a
\* primary steps down (fenced). Newer but merely heard of (a node that
\* restarted, or was away): a non-primary adopts it, and a primary takes a
\* term above it (Retake): a new epoch of its own, a new sequence space,
\* HELLO (a claim) and a dump to every peer, its tables as they are; so a
\* live primary is never deposed by a node that is down or behind. bag: the
\* messages in flight (the HELLO consumed); reset: the peer whose former
\* acknowledgements no longer count (it restarted), or 0.
HearEpoch(n, e, claims, live, bag, reset) ==
    IF EpochLT(epoch[n], e) /\ (claims \/ live \/ role[n] # PRIMARY)
    THEN /\ StepDown(n, e)
         /\ msgs' = bag
         /\ UNCHANGED <<nextSeq, peerAck, overflow>>
    ELSE IF EpochLT(epoch[n], e) /\ e[1] < MaxTerm
    THEN LET e2 == <<e[1] + 1, n>> IN
         /\ epoch' = [epoch EXCEPT ![n] = e2]
         /\ Put(bag, Deliverable(HelloClaim(n, e2)))
         /\ OwnStream(n)
         /\ UNCHANGED <<role, needSync, dumped, dead, receiverVars>>
    ELSE /\ msgs' = bag
         /\ ackedRecently' = IF reset = 0 THEN ackedRecently
                             ELSE [ackedRecently EXCEPT ![n][reset] = FALSE]
         /\ UNCHANGED <<epoch, role, needSync, dumped, dead, nextSeq, queue, peerAck,
                        bulk, todo, dirty, behind, resume, receiverVars, overflow>>

\* HELLO: a node announces the newest epoch it has seen (HearEpoch).
RecvHello(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_HELLO) :
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ HearEpoch(n, MsgEpoch(msg), msg.claims, msg.live, Consume(msg), 0)
    /\ UNCHANGED <<master, linkUp, env, tableVars, channelVars, stash, lastVer,
                   born, owed, promoted, failedAs, fenced, repairs>>

\* The handshake, as one step: n binds m's current session once m proved the
\* key over n's own (challenge-response with both session nonces, in HELLOs).
\* n's replay window for m starts after the handshake: every frame m sent n
\* before it (in flight, or captured by the adversary) is refused from now on.
\* m's HELLO tells its newest epoch (HearEpoch); m may have restarted: what
\* it acknowledged before is no longer recent.
Bind(n, m) ==
    /\ m # n /\ Up(role[n]) /\ Reachable(n, m)
    /\ bound[n][m] # sess[m]
    /\ bound' = [bound EXCEPT ![n][m] = sess[m]]
    /\ stash' = {IF e.msg.src = m THEN [e EXCEPT !.spent = @ \cup {n}] ELSE e : e \in stash}
    /\ HearEpoch(n, epoch[m], role[m] = PRIMARY, FollowsLive(m), DropAll(LAMBDA x : x.src = m /\ x.dst = n), m)
    /\ UNCHANGED <<master, linkUp, env, tableVars, sess, peerLive, lastVer, born, owed,
                   promoted, failedAs, fenced, repairs>>

\* ---------------------------------------------------------------------------
\* 9. Next state, fairness
\* ---------------------------------------------------------------------------
HAManager ==
    \E n \in Node : Promote(n) \/ Resign(n) \/ Demote(n) \/ Fault(n)
                    \/ Fail(n) \/ Recover(n)

Environment ==
    \/ HAManager
    \/ \E a, b \in Node : LinkDown(a, b) \/ LinkUp(a, b)
    \/ LoseMsg \/ DuplicateMsg \/ Capture \/ Replay
    \/ \E n \in Node : RestartBulk(n)
    \/ \E n \in Node, c \in Conn :
          ConnNew(n, c) \/ ConnUpdate(n, c) \/ ConnDestroy(n, c) \/ KernelExpire(n, c)

Protocol ==
    \/ \E n \in Node :
          Notify(n) \/ FlushIncremental(n) \/ SendBulk(n) \/ Retransmit(n)
          \/ SendAlive(n) \/ Reassert(n) \/ Reject(n)
    \/ \E n, m \in Node :
          \/ RecvAck(n, m) \/ RecvNack(n, m) \/ RecvResyncRequest(n, m)
          \/ PeerTimeout(n, m) \/ AckAges(n, m) \/ Bind(n, m)
          \/ RecvState(n, m) \/ RecvAlive(n, m) \/ SendAck(n, m)
          \/ RequestResync(n, m) \/ RecvHello(n, m)

Next == Environment \/ Protocol

\* The protocol's own steps are weakly fair: messages in flight on an up link
\* get received, events get notified, timers fire, handshakes complete. So is
\* the HA manager's election and resolution of two masters (VRRP always
\* elects). The rest of the environment is not fair: every fault budget is
\* finite, so faults and traffic eventually stop. RecvState's fairness is
\* named on its own: the non-vacuity models drop it, and TLC must then find
\* Converges violated.
FairnessButRecvState ==
    /\ \A n \in Node :
          /\ WF_vars(Notify(n)) /\ WF_vars(FlushIncremental(n))
          /\ WF_vars(SendBulk(n)) /\ WF_vars(Retransmit(n)) /\ WF_vars(SendAlive(n))
          /\ WF_vars(Reassert(n)) /\ WF_vars(Reject(n))
          /\ WF_vars(Promote(n)) /\ WF_vars(Resign(n))
    /\ \A n, m \in Node :
          /\ WF_vars(RecvAck(n, m)) /\ WF_vars(RecvNack(n, m))
          /\ WF_vars(RecvResyncRequest(n, m)) /\ WF_vars(PeerTimeout(n, m))
          /\ WF_vars(AckAges(n, m)) /\ WF_vars(Bind(n, m))
          /\ WF_vars(RecvAlive(n, m))
          /\ WF_vars(SendAck(n, m)) /\ WF_vars(RequestResync(n, m))
          /\ WF_vars(RecvHello(n, m))
Fairness == FairnessButRecvState /\ \A n, m \in Node : WF_vars(RecvState(n, m))

Spec == Init /\ [][Next]_vars
FairSpec == Spec /\ Fairness

\* ---------------------------------------------------------------------------
\* Properties (spec/README.md says what each means for a user)
\* ---------------------------------------------------------------------------
TypeOK ==
    /\ role \in [Node -> Role]
    /\ master \in [Node -> BOOLEAN]
    /\ linkUp \subseteq {Pair(a, b) : a, b \in Node}
    /\ env \in [fail : 0..MaxFail, ha : 0..MaxHA, cut : 0..MaxCut,
                loss : 0..MaxLoss, dup : 0..MaxDup, replay : 0..MaxReplay,
                restart : 0..MaxLoss]
    /\ kernel \in [Node -> Table] /\ internal \in [Node -> Table]
    /\ external \in [Node -> Table]
    /\ epoch \in [Node -> Epoch]
    /\ sess \in [Node -> Session]
    /\ bound \in [Node -> [Node -> Session \cup {0}]]
    /\ nextSeq \in [Node -> Nat]
    /\ \A n \in Node : queue[n] \in Seq(Frame)
    /\ peerAck \in [Node -> [Node -> Nat]]
    /\ peerLive \in [Node -> [Node -> BOOLEAN]]
    /\ bulk \in [Node -> BulkPhase]
    /\ todo \in [Node -> SUBSET Conn] /\ dirty \in [Node -> SUBSET Conn]
    /\ behind \in [Node -> [Node -> BOOLEAN]]
    /\ resume \in [Node -> [Node -> Nat \cup {NoSeq}]]
    /\ ackedRecently \in [Node -> [Node -> BOOLEAN]]
    /\ expect \in [Node -> Nat] /\ ackFrom \in [Node -> Nat]
    /\ inBulk \in [Node -> BOOLEAN] /\ marked \in [Node -> SUBSET Conn]
    /\ needSync \in [Node -> BOOLEAN]
    /\ IsABag(msgs) /\ BagToSet(msgs) \subseteq Msg
    /\ stash \subseteq [msg : Msg, spent : SUBSET Node]
    /\ lastVer \in [Conn -> Version] /\ born \in [Conn -> Version]
    /\ owed \in [Node -> SUBSET (Epoch \X Conn)]
    /\ promoted \in [Node -> [ready : BOOLEAN, from : Epoch,
                                how : {"none", "elected", "reasserted"}]]
    /\ dead \in [Node -> [Conn -> Version]]
    /\ dumped \in [Node -> BOOLEAN]
    /\ overflow \in BOOLEAN
    /\ failedAs \in [Node -> Role \cup {"none"}]
    /\ fenced \in BOOLEAN
    /\ repairs \subseteq {"retransmit", "resync"}

\* No two primaries in the same epoch; a primary's epoch is its own.
OnePrimaryPerEpoch ==
    /\ \A n \in Primaries : epoch[n][2] = n
    /\ \A n, m \in Primaries : n # m => epoch[n] # epoch[m]

\* When VRRP cannot split, at most one node is primary.
OnePrimary == ~SplitBrain => Cardinality(Primaries) <= 1

\* A primary is the node keepalived made master.
PrimaryIsMaster == \A n \in Primaries : master[n]

\* No acknowledged state lost: a node that took over while in sync holds in
\* its kernel every connection it acknowledged to the primary it followed
\* (the frames that primary sent, covered by ACKs it received), unless the
\* connection was destroyed since.
NoAckedStateLost ==
    \A n \in Primaries :
        promoted[n].ready =>
            \A x \in owed[n] : x[1] = promoted[n].from => kernel[n][x[2]] # 0

\* An ACK covers only applied state: a BACKUP of the primary's epoch that the
\* primary's book shows has acknowledged every frame (no dump owed to it,
\* none running, nothing dirty, no event pending) holds the primary's table.
AckCoversApplied ==
    \A p \in Primaries, b \in Node :
        ( /\ b # p /\ role[b] = BACKUP /\ epoch[b] = epoch[p]
          /\ peerLive[p][b] /\ ~behind[p][b] /\ nextSeq[p] > 0
          /\ peerAck[p][b] = nextSeq[p]
          /\ bulk[p] = "idle" /\ dirty[p] = {} /\ Settled(p) )
        => SameTable(external[b], internal[p])

\* No resurrection: a node never holds again a version of a connection it has
\* seen destroyed in the stream it follows (a primary in its kernel, a
\* receiving node in its external cache).
NoResurrection ==
    \A n \in Node, c \in Conn :
        /\ role[n] = PRIMARY => (kernel[n][c] = 0 \/ kernel[n][c] > dead[n][c])
        /\ role[n] \in Receiving => (external[n][c] = 0 \/ external[n][c] > dead[n][c])

\* Ready (BACKUP: keepalived may elect it) only after a whole dump since the
\* node last started or stopped being primary or was told fault.
ReadyMeansSynced == \A n \in Node : role[n] = BACKUP => dumped[n]

\* No zombie in a backup's kernel: a ready backup's kernel holds only what its
\* primary's stream vouches for (an entry left from an earlier life, a
\* connection reset while the node was away, would come back at its next
\* term as primary).
KernelVouched ==
    \A n \in Node, c \in Conn : (role[n] = BACKUP /\ kernel[n][c] # 0) => external[n][c] # 0

\* The resend queue never exceeds its bound.
QueueBounded == \A n \in Node : Len(queue[n]) <= QueueBound

\* The protocol never floods the network beyond MaxInFlight messages.
NoOverflow == ~overflow

\* No stale state: every step that changes the external cache of a node that
\* receives before and after consumes a STATE message whose epoch is not
\* older than the newest the node had seen.
Consumed(msg) == CopiesIn(msg, msgs') < CopiesIn(msg, msgs)
NoStaleStateStep ==
    \A n \in Node :
        (role[n] \in Receiving /\ role'[n] \in Receiving /\ external'[n] # external[n]) =>
            \E msg \in BagToSet(msgs) :
                /\ msg.dst = n /\ msg.type = MSG_STATE /\ Consumed(msg)
                /\ ~Stale(n, msg)
NoStaleState == [][NoStaleStateStep]_vars

\* Epochs only grow (what fencing relies on).
EpochMonotonic == [][\A n \in Node : ~EpochLT(epoch'[n], epoch[n])]_vars

\* A live primary is never deposed by a node that is down or behind: it
\* steps down only when told of a primary (or when keepalived takes its
\* master role away): a claim (STATE, ALIVE, a primary's HELLO) or a HELLO
\* vouching for a live primary (live), received in this step, or the
\* handshake with a primary or with a node that follows a live one (Bind: its
\* HELLOs are not messages of the model).
ToldOfAPrimary(n) ==
    \/ \E msg \in BagToSet(msgs) :
          /\ msg.dst = n /\ Consumed(msg)
          /\ (msg.type \in Broadcast \/ msg.claims \/ msg.live)
    \/ \E m \in Peers(n) :
          /\ bound'[n][m] # bound[n][m]
          /\ (role[m] = PRIMARY \/ FollowsLive(m))
StepsDownOnlyForAPrimaryStep ==
    \A n \in Node :
        (role[n] = PRIMARY /\ role'[n] = SYNCING /\ master'[n]) => ToldOfAPrimary(n)
StepsDownOnlyForAPrimary == [][StepsDownOnlyForAPrimaryStep]_vars

\* What each side keeps when a split brain heals: a primary's kernel changes
\* only by its own traffic (no other node's frames take anything from it),
\* and a primary that steps down keeps its kernel as it is (its connections
\* live on; the winner's dump then confirms or removes them: when the frame
\* that deposes it is a whole dump, in the same step, hence ~dumped').
KernelKeptStep ==
    \A n \in Node :
        /\ (role[n] = PRIMARY /\ role'[n] = PRIMARY /\ kernel'[n] # kernel[n])
              => internal'[n] = internal[n]
        /\ (role[n] = PRIMARY /\ role'[n] \in Receiving /\ ~dumped'[n]) => kernel'[n] = kernel[n]
KernelKept == [][KernelKeptStep]_vars

\* Liveness: once links stay up (faults and traffic stop by their budgets),
\* some node is primary for good, and every live non-primary's external cache
\* eventually equals the primary's table (weak level: the same connections
\* exist) and nobody stays SYNCING.
AllLinksUp == linkUp = AllLinks
Synced ==
    \A p \in Primaries :
        /\ \A b \in Node : role[b] \in Receiving =>
                (SameTable(external[b], kernel[p]) /\ role[b] # SYNCING)
Converges == <>[]AllLinksUp => <>[]Synced
ElectsPrimary == <>[]AllLinksUp => <>[](Primaries # {})

\* ---------------------------------------------------------------------------
\* Reachability: the five failure scenarios of docs/architecture.md happen in the model
\* (each "not reached" invariant must be violated by TLC).
\* ---------------------------------------------------------------------------
\* 1. The primary fails; the backup is promoted while in sync, commits its
\*    external cache (an acknowledged connection is in its kernel), serves.
Scenario1NotReached ==
    ~\E n, m \in Node :
        /\ role[n] = PRIMARY /\ role[m] = DOWN /\ failedAs[m] = PRIMARY
        /\ promoted[n].ready
        /\ \E x \in owed[n] : x[1] = promoted[n].from /\ kernel[n][x[2]] # 0

\* 2. The backup fails and comes back: it starts empty and resynchronizes.
Scenario2NotReached ==
    ~\E n, p \in Node :
        /\ failedAs[n] \in {BACKUP, SYNCING} /\ role[n] = BACKUP
        /\ role[p] = PRIMARY /\ Present(kernel[p]) # {}
        /\ SameTable(external[n], kernel[p])

\* 3. The backup fails and stays dead: the primary has sent more frames
\*    since the backup's last ack than the queue holds, and goes on.
Scenario3NotReached ==
    ~\E p, b \in Node :
        /\ role[p] = PRIMARY /\ role[b] = DOWN
        /\ failedAs[b] \in {BACKUP, SYNCING}
        /\ ~peerLive[p][b]
        /\ nextSeq[p] > peerAck[p][b] + QueueBound

\* 4. The former primary comes back: it was fenced (a stale frame dropped),
\*    joined the new primary's epoch as backup and resynchronized.
Scenario4NotReached ==
    ~\E m, p \in Node :
        /\ failedAs[m] = PRIMARY /\ role[m] = BACKUP
        /\ role[p] = PRIMARY /\ epoch[m] = epoch[p]
        /\ fenced
        /\ SameTable(external[m], kernel[p])

\* 5. Link down with both alive; on heal the gap is detected (NACK) and
\*    repaired: by retransmission (5a) or by a full resync (5b).
Scenario5NotReached(how) ==
    ~\E b, p \in Node :
        /\ failedAs[b] = "none" /\ failedAs[p] = "none"
        /\ role[b] = BACKUP /\ role[p] = PRIMARY
        /\ how \in repairs
        /\ Present(kernel[p]) # {}
        /\ SameTable(external[b], kernel[p])
Scenario5aNotReached == Scenario5NotReached("retransmit")
Scenario5bNotReached == Scenario5NotReached("resync")
=============================================================================
