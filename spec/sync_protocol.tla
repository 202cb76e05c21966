--------------------------- MODULE sync_protocol ---------------------------
(***************************************************************************)
(* snep: conntrack state synchronization for an HA cluster, and failover.  *)
(*                                                                         *)
(* Read this module as the protocol's table of contents:                   *)
(*   1. constants and the values the protocol talks about;                 *)
(*   2. variables, grouped: environment, tables, epochs, sender, receiver, *)
(*      network, ghosts (ghosts only feed the properties);                 *)
(*   3. helpers (epochs, sending, the resend queue);                       *)
(*   4. the HA manager (Promote, Demote, Fault, Fail, Recover);            *)
(*   5. the network (LinkDown, LinkUp, LoseMsg, DuplicateMsg);             *)
(*   6. traffic on the primary (ConnNew, ConnUpdate, ConnDestroy) and the  *)
(*      kernel of the others (KernelExpire);                               *)
(*   7. the sender (Notify, FlushIncremental, SendBulk, Retransmit,        *)
(*      SendAlive, RecvAck, RecvNack, RecvResyncRequest, PeerTimeout,      *)
(*      AckAges): one dump per need (a peer waiting for a dump it can      *)
(*      still get whole starts no new one);                                *)
(*   8. the receiver (RecvState, RecvAlive, SendAck, RequestResync,        *)
(*      RecvHello);                                                        *)
(*   9. Next, fairness, and the properties.                                *)
(*                                                                         *)
(* Every action has one Python counterpart (spec/README.md holds the       *)
(* table). A protocol change starts here, is model-checked, then mirrored. *)
(*                                                                         *)
(* Messages live in a bag: any message in flight can be received next      *)
(* (reordering), LoseMsg removes a copy, DuplicateMsg adds one; a cut     *)
(* link or a dead process loses every copy in flight to it.               *)
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
    SplitBrain   \* may the HA manager promote while a primary is alive?

ASSUME Node \subseteq Nat \ {0} /\ Cardinality(Node) >= 2
ASSUME Level \in {"strong", "weak", "incremental"}
ASSUME NoConn \notin Conn
ASSUME QueueBound \in Nat \ {0}
ASSUME SplitBrain \in BOOLEAN
ASSUME {MaxVersion, MaxTerm, MaxFail, MaxHA, MaxCut, MaxLoss, MaxDup} \subseteq Nat

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

\* Every message has every field; unused fields are 0 / NoConn / FALSE.
\* seq: STATE: its own seq; ALIVE: the sender's next seq (newest + 1);
\* others 0. lo..hi: the range of an ACK or NACK.
Msg == [type : MsgType, src : Node, dst : Node, term : 0..MaxTerm,
        enode : Node \cup {0}, seq : Nat, conn : Conn \cup {NoConn},
        ver : Version, start : BOOLEAN, end : BOOLEAN, lo : Nat, hi : Nat]

\* ---------------------------------------------------------------------------
\* 2. Variables
\* ---------------------------------------------------------------------------
\* environment: what the HA manager and the network decide
VARIABLES role,      \* role[n] \in Role
          linkUp,    \* set of {a, b} pairs whose link is up
          env        \* how much of each fault budget is used
envVars == <<role, linkUp, env>>

\* tables
VARIABLES kernel,    \* kernel[n]: n's kernel conntrack table
          internal,  \* internal[n]: what n's kernel holds (sent by a primary)
          external   \* external[n]: what peers told n (committed on takeover)
tableVars == <<kernel, internal, external>>

\* epochs
VARIABLE epoch       \* epoch[n]: newest epoch n has seen (persisted)

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

\* network
VARIABLE msgs        \* bag of messages in flight

\* ghosts: only the properties read them
VARIABLES lastVer,   \* lastVer[c]: newest version c ever had (versions grow)
          born,      \* born[c]: version c had when last created
          ackd,      \* ackd[n]: connections n acknowledged that the primary had
          failedAs,  \* failedAs[n]: role n had when it last failed, or "none"
          fenced,    \* some stale STATE/ALIVE was dropped (epoch fencing)
          repairs    \* how NACKs were answered: "retransmit", "resync"
ghostVars == <<lastVer, born, ackd, failedAs, fenced, repairs>>

vars == <<envVars, tableVars, epoch, senderVars, receiverVars, msgs, ghostVars>>

\* ---------------------------------------------------------------------------
\* 3. Helpers
\* ---------------------------------------------------------------------------
Pair(a, b) == {a, b}
Reachable(a, b) == a # b /\ Pair(a, b) \in linkUp /\ Up(role[a]) /\ Up(role[b])
Peers(n) == Node \ {n}
Primaries == {n \in Node : role[n] = PRIMARY}

MsgOf(t, s, d) ==
    [type |-> t, src |-> s, dst |-> d, term |-> epoch[s][1],
     enode |-> epoch[s][2], seq |-> 0, conn |-> NoConn, ver |-> 0,
     start |-> FALSE, end |-> FALSE, lo |-> 0, hi |-> 0]
MsgEpoch(msg) == <<msg.term, msg.enode>>

\* Sending on a link that is down, or to a node that is down, loses it.
Send(S) == msgs' = msgs (+) SetToBag({msg \in S : Reachable(msg.src, msg.dst)})
Consume(msg) == msgs (-) SetToBag({msg})
\* Every copy of the messages in flight that satisfy P goes (a cut link, a
\* dead process: nothing of what was on its way arrives).
DropAll(P(_)) == [x \in {y \in DOMAIN msgs : ~P(y)} |-> msgs[x]]
ConsumeAndSend(msg, S) ==
    msgs' = Consume(msg) (+) SetToBag({x \in S : Reachable(x.src, x.dst)})
InFlight(n, m, t) == \E msg \in BagToSet(msgs) :
                        msg.src = n /\ msg.dst = m /\ msg.type = t

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
\* tables, all links up, no epoch yet.
\* ---------------------------------------------------------------------------
Init ==
    /\ role = [n \in Node |-> SYNCING]
    /\ linkUp = {Pair(a, b) : a, b \in Node} \ {{n} : n \in Node}
    /\ env = [fail |-> 0, ha |-> 0, cut |-> 0, loss |-> 0, dup |-> 0]
    /\ kernel = [n \in Node |-> EmptyTable]
    /\ internal = [n \in Node |-> EmptyTable]
    /\ external = [n \in Node |-> EmptyTable]
    /\ epoch = [n \in Node |-> NoEpoch]
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
    /\ lastVer = [c \in Conn |-> 0]
    /\ born = [c \in Conn |-> 0]
    /\ ackd = [n \in Node |-> {}]
    /\ failedAs = [n \in Node |-> "none"]
    /\ fenced = FALSE
    /\ repairs = {}

\* ---------------------------------------------------------------------------
\* 4. The HA manager (environment)
\* ---------------------------------------------------------------------------
\* Become primary: commit the external cache into the kernel, take the new
\* epoch (newest term + 1, own id), resync the internal cache from a kernel
\* dump, send HELLO, bulk send to all peers. The HA manager (VRRP) promotes
\* a node only when it hears no primary. With SplitBrain, VRRP shares the
\* sync link: a partition lets it promote while the primary is alive
\* (two primaries, fenced by epochs on heal); without, it never does.
Promote(n) ==
    /\ role[n] \in Receiving
    /\ epoch[n][1] < MaxTerm
    /\ IF SplitBrain THEN ~\E p \in Primaries : Reachable(n, p)
                     ELSE Primaries = {}
    /\ LET committed == [c \in Conn |-> IF external[n][c] # 0
                                        THEN external[n][c]
                                        ELSE kernel[n][c]]
           e == <<epoch[n][1] + 1, n>>
       IN /\ kernel' = [kernel EXCEPT ![n] = committed]
          /\ internal' = [internal EXCEPT ![n] = committed]
          /\ epoch' = [epoch EXCEPT ![n] = e]
          /\ msgs' = msgs (+) SetToBag({msg \in
                 {[MsgOf(MSG_HELLO, n, m) EXCEPT !.term = e[1], !.enode = e[2]]
                    : m \in Peers(n)} : Reachable(msg.src, msg.dst)})
    /\ role' = [role EXCEPT ![n] = PRIMARY]
    /\ nextSeq' = [nextSeq EXCEPT ![n] = 0]
    /\ queue' = [queue EXCEPT ![n] = <<>>]
    /\ peerAck' = [peerAck EXCEPT ![n] = [m \in Node |-> 0]]
    /\ bulk' = [bulk EXCEPT ![n] = "start"]
    /\ todo' = [todo EXCEPT ![n] = {}]
    /\ dirty' = [dirty EXCEPT ![n] = {}]
    /\ ResetPeers(n)
    /\ needSync' = [needSync EXCEPT ![n] = FALSE]
    /\ ResetReceiver(n)
    /\ UNCHANGED <<linkUp, env, external, peerLive, ghostVars>>

\* Become backup (from primary or fault): the kernel's entries get short
\* timeouts (KernelExpire), the node requests a resync and is SYNCING.
Demote(n) ==
    /\ role[n] \in {PRIMARY, FAULT}
    /\ env.ha < MaxHA
    /\ env' = [env EXCEPT !.ha = @ + 1]
    /\ role' = [role EXCEPT ![n] = SYNCING]
    /\ needSync' = [needSync EXCEPT ![n] = TRUE]
    /\ ClearSender(n)
    /\ UNCHANGED <<linkUp, tableVars, epoch, nextSeq, peerAck, peerLive,
                   expect, ackFrom, inBulk, marked, msgs, ghostVars>>

\* The HA manager says fault: not primary, keeps receiving, not ready.
Fault(n) ==
    /\ role[n] \in {PRIMARY, SYNCING, BACKUP}
    /\ env.ha < MaxHA
    /\ env' = [env EXCEPT !.ha = @ + 1]
    /\ role' = [role EXCEPT ![n] = FAULT]
    /\ needSync' = [needSync EXCEPT ![n] = TRUE]
    /\ ClearSender(n)
    /\ UNCHANGED <<linkUp, tableVars, epoch, nextSeq, peerAck, peerLive,
                   expect, ackFrom, inBulk, marked, msgs, ghostVars>>

\* The process dies: caches and queues are gone; the kernel table and the
\* persisted epoch stay. Messages to it are lost.
Fail(n) ==
    /\ Up(role[n])
    /\ env.fail < MaxFail
    /\ env' = [env EXCEPT !.fail = @ + 1]
    /\ role' = [role EXCEPT ![n] = DOWN]
    /\ internal' = [internal EXCEPT ![n] = EmptyTable]
    /\ external' = [external EXCEPT ![n] = EmptyTable]
    /\ ClearSender(n)
    /\ ResetReceiver(n)
    /\ needSync' = [needSync EXCEPT ![n] = FALSE]
    /\ msgs' = DropAll(LAMBDA msg : msg.dst = n)
    /\ failedAs' = [failedAs EXCEPT ![n] = role[n]]
    /\ ackd' = [ackd EXCEPT ![n] = {}]
    /\ UNCHANGED <<linkUp, kernel, epoch, nextSeq, peerAck, peerLive,
                   lastVer, born, fenced, repairs>>

\* Process start: internal cache from a kernel dump, external cache empty,
\* SYNCING until the HA manager says more. Its first RequestResync is the
\* start's HELLO + RESYNC_REQUEST (a RESYNC_REQUEST carries the epoch too).
Recover(n) ==
    /\ role[n] = DOWN
    /\ role' = [role EXCEPT ![n] = SYNCING]
    /\ internal' = [internal EXCEPT ![n] = kernel[n]]
    /\ external' = [external EXCEPT ![n] = EmptyTable]
    /\ needSync' = [needSync EXCEPT ![n] = TRUE]
    /\ ResetReceiver(n)
    /\ UNCHANGED <<linkUp, env, kernel, epoch, senderVars, msgs, ghostVars>>

\* ---------------------------------------------------------------------------
\* 5. The network
\* ---------------------------------------------------------------------------
LinkDown(a, b) ==
    /\ a < b /\ Pair(a, b) \in linkUp
    /\ env.cut < MaxCut
    /\ env' = [env EXCEPT !.cut = @ + 1]
    /\ linkUp' = linkUp \ {Pair(a, b)}
    /\ msgs' = DropAll(LAMBDA msg : {msg.src, msg.dst} = Pair(a, b))
    /\ UNCHANGED <<role, tableVars, epoch, senderVars, receiverVars, ghostVars>>

LinkUp(a, b) ==
    /\ a < b /\ Pair(a, b) \notin linkUp
    /\ linkUp' = linkUp \cup {Pair(a, b)}
    /\ UNCHANGED <<role, env, tableVars, epoch, senderVars, receiverVars,
                   msgs, ghostVars>>

LoseMsg ==
    /\ env.loss < MaxLoss
    /\ \E msg \in BagToSet(msgs) : msgs' = Consume(msg)
    /\ env' = [env EXCEPT !.loss = @ + 1]
    /\ UNCHANGED <<role, linkUp, tableVars, epoch, senderVars, receiverVars,
                   ghostVars>>

DuplicateMsg ==
    /\ env.dup < MaxDup
    /\ \E msg \in BagToSet(msgs) : msgs' = msgs (+) SetToBag({msg})
    /\ env' = [env EXCEPT !.dup = @ + 1]
    /\ UNCHANGED <<role, linkUp, tableVars, epoch, senderVars, receiverVars,
                   ghostVars>>

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
    /\ UNCHANGED <<envVars, internal, external, epoch, senderVars, receiverVars,
                   msgs, ackd, failedAs, fenced, repairs>>

ConnUpdate(n, c) ==
    /\ role[n] = PRIMARY /\ Settled(n) /\ kernel[n][c] # 0 /\ lastVer[c] < MaxVersion
    /\ kernel' = [kernel EXCEPT ![n][c] = lastVer[c] + 1]
    /\ lastVer' = [lastVer EXCEPT ![c] = @ + 1]
    /\ UNCHANGED <<envVars, internal, external, epoch, senderVars, receiverVars,
                   msgs, born, ackd, failedAs, fenced, repairs>>

\* A destroyed connection is no longer owed to anyone (ghost: ackd).
ConnDestroy(n, c) ==
    /\ role[n] = PRIMARY /\ Settled(n) /\ kernel[n][c] # 0
    /\ kernel' = [kernel EXCEPT ![n][c] = 0]
    /\ ackd' = [m \in Node |-> ackd[m] \ {c}]
    /\ UNCHANGED <<envVars, internal, external, epoch, senderVars, receiverVars,
                   msgs, lastVer, born, failedAs, fenced, repairs>>

\* On a node that is not primary, kernel entries time out (they got short
\* timeouts when it became backup): stale entries of a former primary go.
KernelExpire(n, c) ==
    /\ role[n] # PRIMARY /\ kernel[n][c] # 0
    /\ kernel' = [kernel EXCEPT ![n][c] = 0]
    /\ UNCHANGED <<envVars, internal, external, epoch, senderVars, receiverVars,
                   msgs, ghostVars>>

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
                   /\ UNCHANGED <<queue, nextSeq, msgs>>
    /\ UNCHANGED <<envVars, kernel, external, epoch, peerAck, peerLive, bulk,
                   todo, peerVars, receiverVars, ghostVars>>

\* Incremental level: the period's flush sends the newest state of each
\* dirty connection (one frame per step).
FlushIncremental(n) ==
    /\ Level = "incremental"
    /\ role[n] = PRIMARY
    /\ \E c \in dirty[n] :
        /\ EmitFrame(n, NewFrame(n, c, internal[n][c]))
        /\ dirty' = [dirty EXCEPT ![n] = @ \ {c}]
    /\ UNCHANGED <<envVars, tableVars, epoch, peerAck, peerLive, bulk, todo,
                   peerVars, receiverVars, ghostVars>>

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
    /\ UNCHANGED <<envVars, tableVars, epoch, peerAck, peerLive, dirty, behind,
                   ackedRecently, receiverVars, ghostVars>>

\* Retransmission timer: resend the queued frames a live, reachable peer the
\* queue serves has not acknowledged (a peer waiting for a dump: from its
\* BULK_START on). The timeout exceeds a round trip: not while frames to the
\* peer or acks from it are in flight.
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
    /\ UNCHANGED <<envVars, tableVars, epoch, senderVars, receiverVars, ghostVars>>

\* ALIVE on an idle channel (nothing to retransmit to that peer): carries the
\* next seq, so a receiver that missed the last frames detects the gap.
SendAlive(n) ==
    /\ role[n] = PRIMARY
    /\ LET idle == {m \in Peers(n) : Reachable(n, m) /\ ~InFlight(n, m, MSG_STATE)
                                     /\ ~InFlight(n, m, MSG_ALIVE)
                                     /\ ~(peerLive[n][m] /\ Unacked(n, m) # {})}
       IN /\ idle # {}
          /\ Send({[MsgOf(MSG_ALIVE, n, m) EXCEPT !.seq = nextSeq[n]] : m \in idle})
    /\ UNCHANGED <<envVars, tableVars, epoch, senderVars, receiverVars, ghostVars>>

\* Receiving any frame: a newer epoch is adopted (persisted); a primary that
\* hears one steps down (fenced) to SYNCING and requests a resync; the
\* receiver's stream restarts at 0 for the new epoch.
Newer(n, msg) == EpochLT(epoch[n], MsgEpoch(msg))
Stale(n, msg) == EpochLT(MsgEpoch(msg), epoch[n])

\* A control frame that fences a primary: adopt the epoch, step down.
StepDown(n, msg) ==
    /\ epoch' = [epoch EXCEPT ![n] = MsgEpoch(msg)]
    /\ role' = [role EXCEPT ![n] = IF @ = PRIMARY THEN SYNCING ELSE @]
    /\ needSync' = [needSync EXCEPT ![n] = @ \/ role[n] = PRIMARY]
    /\ ackd' = [ackd EXCEPT ![n] = {}]
    /\ IF role[n] = PRIMARY THEN ClearSender(n)
       ELSE UNCHANGED <<queue, bulk, todo, dirty, peerVars>>
    /\ ResetReceiver(n)

Receivable(n, m, t) ==
    {msg \in BagToSet(msgs) : msg.dst = n /\ msg.src = m /\ msg.type = t}

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

\* ACK(lo, hi): m has applied every frame up to hi (cumulative). Frames that
\* every live peer acknowledged leave the queue. An ACK about an older
\* epoch's stream is dropped.
RecvAck(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_ACK) :
        /\ msgs' = Consume(msg)
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ IF Newer(n, msg)
           THEN /\ StepDown(n, msg)
                /\ UNCHANGED <<peerAck, nextSeq>>
           ELSE /\ IF role[n] = PRIMARY /\ MsgEpoch(msg) = epoch[n]
                   THEN LET pa == [peerAck EXCEPT ![n][m] =
                                      IF msg.hi + 1 > @ THEN msg.hi + 1 ELSE @]
                            pl == [peerLive EXCEPT ![n][m] = TRUE]
                        IN /\ Advance(n, m, msg.hi + 1)
                           /\ queue' = [queue EXCEPT ![n] = Trim(@, n, pa[n], pl[n])]
                   ELSE UNCHANGED <<peerAck, queue, peerVars>>
                /\ UNCHANGED <<epoch, role, needSync, ackd, bulk, todo, dirty,
                               receiverVars, nextSeq>>
    /\ UNCHANGED <<linkUp, env, tableVars, lastVer, born, failedAs, fenced, repairs>>

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
        /\ IF Newer(n, msg)
           THEN /\ StepDown(n, msg)
                /\ msgs' = Consume(msg)
                /\ UNCHANGED <<peerAck, repairs>>
           ELSE IF ~serve
           THEN /\ msgs' = Consume(msg)
                /\ UNCHANGED <<epoch, role, needSync, ackd, queue, bulk, todo, dirty,
                               peerAck, peerVars, receiverVars, repairs>>
           ELSE /\ UNCHANGED <<epoch, role, needSync, ackd, queue, todo, dirty,
                               receiverVars>>
                /\ peerAck' = [peerAck EXCEPT ![n][m] = IF adv THEN msg.lo ELSE @]
                /\ ackedRecently' = [ackedRecently EXCEPT ![n][m] = @ \/ adv]
                /\ IF late /\ first > msg.hi
                   THEN /\ msgs' = Consume(msg)
                        /\ UNCHANGED <<behind, resume, bulk, repairs>>
                   ELSE IF DumpServes(n, b, r)
                   THEN /\ behind' = [behind EXCEPT ![n][m] = b]
                        /\ resume' = [resume EXCEPT ![n][m] = r]
                        /\ UNCHANGED bulk
                        /\ IF r = NoSeq \/ r > msg.hi
                           THEN /\ msgs' = Consume(msg)
                                /\ UNCHANGED repairs
                           ELSE /\ Resend(IF r > first THEN r ELSE first)
                                /\ repairs' = repairs \cup {"retransmit"}
                   ELSE IF ~inQueue(first)
                   THEN /\ msgs' = Consume(msg)
                        /\ NeedsDump(n, m, b, r)
                        /\ repairs' = repairs \cup {"resync"}
                   ELSE /\ Resend(first)
                        /\ behind' = [behind EXCEPT ![n][m] = b]
                        /\ resume' = [resume EXCEPT ![n][m] = r]
                        /\ UNCHANGED bulk
                        /\ repairs' = repairs \cup {"retransmit"}
    /\ UNCHANGED <<linkUp, env, tableVars, nextSeq, lastVer, born, failedAs,
                   fenced>>

\* RESYNC_REQUEST: the primary answers with a bulk dump (any epoch: the
\* requester may not know the newest yet; the dump tells it), unless one
\* under way serves the requester (NeedsDump).
RecvResyncRequest(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_RESYNC) :
        /\ msgs' = Consume(msg)
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ IF Newer(n, msg)
           THEN /\ StepDown(n, msg)
                /\ UNCHANGED peerAck
           ELSE /\ IF role[n] = PRIMARY
                   THEN NeedsDump(n, m, behind[n][m], resume[n][m])
                   ELSE UNCHANGED <<bulk, behind, resume>>
                /\ UNCHANGED <<epoch, role, needSync, ackd, queue, todo, dirty,
                               peerAck, ackedRecently, receiverVars>>
    /\ UNCHANGED <<linkUp, env, tableVars, nextSeq, lastVer, born, failedAs,
                   fenced, repairs>>

\* The retransmit timeout passes: what m acknowledged is no longer "a moment
\* ago" (a NACK below it may now come from a receiver that started over, and
\* is answered as any other). A timer: weakly fair.
AckAges(n, m) ==
    /\ ackedRecently[n][m]
    /\ ackedRecently' = [ackedRecently EXCEPT ![n][m] = FALSE]
    /\ UNCHANGED <<envVars, tableVars, epoch, nextSeq, queue, peerAck, peerLive,
                   bulk, todo, dirty, behind, resume, receiverVars, msgs,
                   ghostVars>>

\* A peer silent for the dead timeout: its acks no longer hold the queue.
\* (The model lets it fire only when the peer really is unreachable.)
PeerTimeout(n, m) ==
    /\ role[n] = PRIMARY
    /\ m # n /\ peerLive[n][m]
    /\ ~Reachable(n, m)
    /\ LET pl == [peerLive EXCEPT ![n][m] = FALSE]
       IN /\ peerLive' = pl
          /\ queue' = [queue EXCEPT ![n] = Trim(@, n, peerAck[n], pl[n])]
    /\ UNCHANGED <<envVars, tableVars, epoch, nextSeq, peerAck, bulk, todo,
                   dirty, peerVars, receiverVars, msgs, ghostVars>>

\* ---------------------------------------------------------------------------
\* 8. The receiver (a non-primary)
\* ---------------------------------------------------------------------------
\* Apply one in-order STATE frame to the external cache. BULK_START marks
\* every external entry, the dump refreshes them, BULK_END sweeps the ones
\* still marked and makes a SYNCING node ready (BACKUP). A BULK_START ahead
\* of the expected seq is applied too: the dump supersedes the missed frames.
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
    LET ext0 == external[n]
        mk0 == IF msg.start THEN Present(ext0) ELSE r0.marked
        ib == msg.start \/ r0.inBulk
        ext1 == IF msg.conn = NoConn THEN ext0
                ELSE [ext0 EXCEPT ![msg.conn] = msg.ver]
        mk1 == mk0 \ {msg.conn}
        sweep == msg.end /\ ib
        ext2 == IF sweep THEN [c \in Conn |-> IF c \in mk1 THEN 0 ELSE ext1[c]]
                ELSE ext1
    IN /\ external' = [external EXCEPT ![n] = ext2]
       /\ marked' = [marked EXCEPT ![n] = IF sweep THEN {} ELSE mk1]
       /\ inBulk' = [inBulk EXCEPT ![n] = ib /\ ~sweep]
       /\ expect' = [expect EXCEPT ![n] = msg.seq + 1]
       /\ needSync' = [needSync EXCEPT ![n] = IF sweep THEN FALSE ELSE r0.needSync]
       /\ role' = [role EXCEPT ![n] = IF sweep /\ r0.role = SYNCING THEN BACKUP
                                       ELSE r0.role]

\* What an ACK of n to the primary m acknowledges (ghost): the connections of
\* n's external cache that m has, in the incarnation m has.
AckedSet(n, m, ext) ==
    {c \in Present(ext) : role[m] = PRIMARY /\ kernel[m][c] # 0 /\ ext[c] >= born[c]}

\* The ack delay: when no further frame of the stream is in flight, the frames
\* applied and not yet acknowledged are acknowledged at once (af..ex-1).
AckOnPause(n, m, msg, af, ex, ext, ackd0) ==
    LET rest == Consume(msg)
        pause == ~\E x \in BagToSet(rest) :
                     x.src = m /\ x.dst = n /\ x.type = MSG_STATE
        ack == [MsgOf(MSG_ACK, n, m) EXCEPT !.term = msg.term, !.enode = msg.enode,
                                            !.lo = af, !.hi = ex - 1]
    IN IF pause /\ af < ex
       THEN /\ msgs' = rest (+) SetToBag({a \in {ack} : Reachable(n, m)})
            /\ ackFrom' = [ackFrom EXCEPT ![n] = ex]
            /\ ackd' = [ackd EXCEPT ![n] = AckedSet(n, m, ext)]
       ELSE /\ msgs' = rest
            /\ ackFrom' = [ackFrom EXCEPT ![n] = af]
            /\ ackd' = [ackd EXCEPT ![n] = ackd0]

\* STATE: strictly in order; a gap is dropped and NACKed; a duplicate is
\* dropped and re-acknowledged (the sender retransmits when our ACK got
\* lost); a stale epoch's frame is dropped, never applied.
RecvState(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_STATE) :
        \* r0: the receiver after adopting a newer epoch (if any)
        LET adopt == Newer(n, msg)
            r0 == [expect |-> IF adopt THEN 0 ELSE expect[n],
                   ackFrom |-> IF adopt THEN 0 ELSE ackFrom[n],
                   role |-> IF adopt /\ role[n] = PRIMARY THEN SYNCING ELSE role[n],
                   needSync |-> needSync[n] \/ (adopt /\ role[n] = PRIMARY),
                   inBulk |-> IF adopt THEN FALSE ELSE inBulk[n],
                   marked |-> IF adopt THEN {} ELSE marked[n]]
            wasPrimary == adopt /\ role[n] = PRIMARY
            ackd0 == IF adopt THEN {} ELSE ackd[n]
        IN
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ epoch' = [epoch EXCEPT ![n] = IF adopt THEN MsgEpoch(msg) ELSE @]
        /\ IF wasPrimary THEN ClearSender(n)
           ELSE UNCHANGED <<queue, bulk, todo, dirty, peerVars>>
        /\ IF Stale(n, msg) \/ (role[n] = PRIMARY /\ ~adopt)
           THEN \* fenced: never applied
                /\ msgs' = Consume(msg)
                /\ fenced' = (fenced \/ Stale(n, msg))
                /\ ackd' = [ackd EXCEPT ![n] = ackd0]
                /\ UNCHANGED <<role, external, receiverVars>>
           ELSE IF msg.seq = r0.expect \/ (msg.start /\ msg.seq > r0.expect)
           THEN /\ ApplyState(n, msg, r0)
                /\ AckOnPause(n, m, msg,
                               IF msg.seq > r0.expect THEN msg.seq ELSE r0.ackFrom,
                               msg.seq + 1, Applied(n, msg, r0), ackd0)
                /\ UNCHANGED fenced
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
                /\ inBulk' = [inBulk EXCEPT ![n] = IF adopt THEN FALSE ELSE @]
                /\ marked' = [marked EXCEPT ![n] = IF adopt THEN {} ELSE @]
                /\ ackd' = [ackd EXCEPT ![n] = ackd0]
                /\ UNCHANGED <<external, fenced>>
           ELSE \* duplicate: drop, acknowledge again from its seq
                /\ AckOnPause(n, m, msg,
                               IF msg.seq < r0.ackFrom THEN msg.seq ELSE r0.ackFrom,
                               r0.expect, external[n], ackd0)
                /\ UNCHANGED <<role, external, expect, inBulk, marked, needSync,
                               fenced>>
    /\ UNCHANGED <<linkUp, env, kernel, internal, nextSeq, peerAck, lastVer, born,
                   failedAs, repairs>>

\* ALIVE carries the primary's next seq: a receiver that is behind NACKs.
RecvAlive(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_ALIVE) :
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ IF Stale(n, msg)
           THEN /\ msgs' = Consume(msg)
                /\ fenced' = TRUE
                /\ UNCHANGED <<epoch, role, needSync, ackd, queue, bulk, todo,
                               dirty, peerVars, receiverVars>>
           ELSE LET adopt == Newer(n, msg)
                    exp == IF adopt THEN 0 ELSE expect[n]
                IN /\ IF adopt THEN StepDown(n, msg)
                      ELSE UNCHANGED <<epoch, role, needSync, ackd, queue, bulk,
                                       todo, dirty, peerVars, receiverVars>>
                   /\ IF role[n] # PRIMARY \/ adopt
                      THEN IF msg.seq > exp
                           THEN ConsumeAndSend(msg, {x \in {[MsgOf(MSG_NACK, n, m) EXCEPT
                                  !.term = msg.term, !.enode = msg.enode,
                                  !.lo = exp, !.hi = msg.seq - 1]} :
                                  ~InFlight(n, m, MSG_NACK)})
                           ELSE msgs' = Consume(msg)
                      ELSE msgs' = Consume(msg)
                   /\ UNCHANGED fenced
    /\ UNCHANGED <<linkUp, env, tableVars, nextSeq, peerAck, lastVer, born, failedAs,
                   repairs>>

\* The ack window: after AckWindow applied frames, ACK(first, last) to the
\* primary of the newest epoch (the ack delay is AckOnPause in RecvState). (Ghost: what n now has
\* acknowledged that the primary has.)
SendAck(n, m) ==
    /\ role[n] \in Receiving
    /\ epoch[n][2] = m /\ m # n
    /\ expect[n] - ackFrom[n] >= AckWindow
    /\ Send({[MsgOf(MSG_ACK, n, m) EXCEPT !.lo = ackFrom[n], !.hi = expect[n] - 1]})
    /\ ackFrom' = [ackFrom EXCEPT ![n] = expect[n]]
    /\ ackd' = [ackd EXCEPT ![n] = AckedSet(n, m, external[n])]
    /\ UNCHANGED <<envVars, tableVars, epoch, senderVars, expect, inBulk, marked,
                   needSync, lastVer, born, failedAs, fenced, repairs>>

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
    /\ UNCHANGED <<envVars, tableVars, epoch, senderVars, receiverVars, ghostVars>>

\* HELLO: announces a node and its epoch; a newer epoch is adopted (and
\* fences a primary that hears it). The peer may have restarted: what it
\* acknowledged no longer tells a late NACK copy from a new need.
RecvHello(n, m) ==
    /\ Up(role[n])
    /\ \E msg \in Receivable(n, m, MSG_HELLO) :
        /\ msgs' = Consume(msg)
        /\ peerLive' = [peerLive EXCEPT ![n][m] = TRUE]
        /\ IF Newer(n, msg) THEN StepDown(n, msg)
           ELSE /\ ackedRecently' = [ackedRecently EXCEPT ![n][m] = FALSE]
                /\ UNCHANGED <<epoch, role, needSync, ackd, queue, bulk, todo, dirty,
                               behind, resume, receiverVars>>
    /\ UNCHANGED <<linkUp, env, tableVars, nextSeq, peerAck, lastVer, born, failedAs,
                   fenced, repairs>>

\* ---------------------------------------------------------------------------
\* 9. Next state, fairness
\* ---------------------------------------------------------------------------
Environment ==
    \/ \E n \in Node : Promote(n) \/ Demote(n) \/ Fault(n) \/ Fail(n) \/ Recover(n)
    \/ \E a, b \in Node : LinkDown(a, b) \/ LinkUp(a, b)
    \/ LoseMsg \/ DuplicateMsg
    \/ \E n \in Node, c \in Conn :
          ConnNew(n, c) \/ ConnUpdate(n, c) \/ ConnDestroy(n, c) \/ KernelExpire(n, c)

Protocol ==
    \/ \E n \in Node :
          Notify(n) \/ FlushIncremental(n) \/ SendBulk(n) \/ Retransmit(n)
          \/ SendAlive(n)
    \/ \E n, m \in Node :
          \/ RecvAck(n, m) \/ RecvNack(n, m) \/ RecvResyncRequest(n, m)
          \/ PeerTimeout(n, m) \/ AckAges(n, m)
          \/ RecvState(n, m) \/ RecvAlive(n, m) \/ SendAck(n, m)
          \/ RequestResync(n, m) \/ RecvHello(n, m)

Next == Environment \/ Protocol

\* The protocol's own steps are weakly fair: messages in flight on an up link
\* get received, events get notified, timers fire. The environment is not
\* fair: every fault budget is finite, so faults and traffic eventually stop.
\* RecvState's fairness is named on its own: the non-vacuity models drop it
\* (BrokenSpec in MCLiveSmall, MCLiveTakeover), and TLC must then find
\* Converges violated.
FairnessButRecvState ==
    /\ \A n \in Node :
          /\ WF_vars(Notify(n)) /\ WF_vars(FlushIncremental(n))
          /\ WF_vars(SendBulk(n)) /\ WF_vars(Retransmit(n)) /\ WF_vars(SendAlive(n))
    /\ \A n, m \in Node :
          /\ WF_vars(RecvAck(n, m)) /\ WF_vars(RecvNack(n, m))
          /\ WF_vars(RecvResyncRequest(n, m)) /\ WF_vars(PeerTimeout(n, m))
          /\ WF_vars(AckAges(n, m))
          /\ WF_vars(RecvAlive(n, m))
          /\ WF_vars(SendAck(n, m)) /\ WF_vars(RequestResync(n, m))
          /\ WF_vars(RecvHello(n, m))
Fairness == FairnessButRecvState /\ \A n, m \in Node : WF_vars(RecvState(n, m))

Spec == Init /\ [][Next]_vars
FairSpec == Spec /\ Fairness

\* ---------------------------------------------------------------------------
\* Properties (spec/README.md explains each)
\* ---------------------------------------------------------------------------
TypeOK ==
    /\ role \in [Node -> Role]
    /\ linkUp \subseteq {Pair(a, b) : a, b \in Node}
    /\ env \in [fail : 0..MaxFail, ha : 0..MaxHA, cut : 0..MaxCut,
                loss : 0..MaxLoss, dup : 0..MaxDup]
    /\ kernel \in [Node -> Table] /\ internal \in [Node -> Table]
    /\ external \in [Node -> Table]
    /\ epoch \in [Node -> Epoch]
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
    /\ lastVer \in [Conn -> Version] /\ born \in [Conn -> Version]
    /\ ackd \in [Node -> SUBSET Conn]
    /\ failedAs \in [Node -> Role \cup {"none"}]
    /\ fenced \in BOOLEAN
    /\ repairs \subseteq {"retransmit", "resync"}

\* No two primaries in the same epoch; a primary's epoch is its own.
OnePrimaryPerEpoch ==
    /\ \A n \in Primaries : epoch[n][2] = n
    /\ \A n, m \in Primaries : n # m => epoch[n] # epoch[m]

\* No acknowledged state lost: what a primary acknowledged as a backup (and
\* the primary it acknowledged to still had, and nobody destroyed since) is
\* in its kernel.
NoAckedStateLost ==
    \A n \in Primaries : \A c \in ackd[n] : kernel[n][c] # 0

\* The resend queue never exceeds its bound.
QueueBounded == \A n \in Node : Len(queue[n]) <= QueueBound

\* No stale state: every step that changes a live node's external cache
\* consumes a STATE message whose epoch is not older than the newest the
\* node had seen. (Kernels change only by traffic on a primary, expiry on a
\* non-primary, and commit of the external cache on promotion.)
Consumed(msg) == CopiesIn(msg, msgs') < CopiesIn(msg, msgs)
NoStaleStateStep ==
    \A n \in Node :
        (Up(role[n]) /\ Up(role'[n]) /\ external'[n] # external[n]) =>
            \E msg \in BagToSet(msgs) :
                /\ msg.dst = n /\ msg.type = MSG_STATE /\ Consumed(msg)
                /\ ~Stale(n, msg)
NoStaleState == [][NoStaleStateStep]_vars

\* Epochs only grow (what fencing relies on).
EpochMonotonic == [][\A n \in Node : ~EpochLT(epoch'[n], epoch[n])]_vars

\* Liveness: once links stay up (faults and traffic stop by their budgets),
\* every live non-primary's external cache eventually equals the primary's
\* table (weak level: the same connections exist) and nobody stays SYNCING.
AllLinksUp == linkUp = {Pair(a, b) : a, b \in Node} \ {{n} : n \in Node}
SameTable(t, u) == IF Level = "weak" THEN Present(t) = Present(u) ELSE t = u
Synced ==
    \A p \in Primaries :
        /\ \A b \in Node : role[b] \in Receiving =>
                (SameTable(external[b], kernel[p]) /\ role[b] # SYNCING)
Converges == <>[]AllLinksUp => <>[]Synced

\* ---------------------------------------------------------------------------
\* Reachability: the five failure scenarios of docs/architecture.md happen in the model
\* (each "not reached" invariant must be violated by TLC).
\* ---------------------------------------------------------------------------
\* 1. The primary fails; the backup is promoted, commits its external
\*    cache (acknowledged connections are in its kernel), serves.
Scenario1NotReached ==
    ~\E n, m \in Node :
        /\ role[n] = PRIMARY /\ role[m] = DOWN /\ failedAs[m] = PRIMARY
        /\ \E c \in ackd[n] : kernel[n][c] # 0

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
