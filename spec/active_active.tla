-------------------------- MODULE active_active ---------------------------
(***************************************************************************)
(* snep in active-active: every firewall forwards, each owns connections,  *)
(* each backs up the others (issue 18; docs/active-active.md, "The         *)
(* protocol: ownership and defer").                                        *)
(*                                                                         *)
(* Ownership is per VRRP group. Node g is the home of group g (keepalived: *)
(* one VRRP instance per node, each node master of its own, backup of the  *)
(* others'). A connection belongs to the group through which it was       *)
(* created (Conn is a set of <<group, i>>), and the group's owner is the   *)
(* node that claims it: keepalived made it master of the group and it     *)
(* took an epoch <<term, node>> of that group, a term above every one it   *)
(* has seen. Each group is an instance of sync_protocol.tla's              *)
(* primary/backup stream with its own epochs; this module abstracts that  *)
(* stream (checked there: sequence numbers, NACK, retransmission, resync,  *)
(* sessions) to a reliable FIFO channel per pair of live nodes, lost when *)
(* either end fails, and keeps what active-active adds:                    *)
(*   1. several owners at once, one per group; the states of every group  *)
(*      go to every peer, straight into its kernel (warm: a packet of any *)
(*      synchronized connection is accepted on any node; there is no      *)
(*      external cache to commit);                                         *)
(*   2. takeover: a failed node's group goes to a ready survivor, with     *)
(*      nothing to commit (Elect), and back to its home when the home has *)
(*      returned and is in sync with every group: the survivor resigns    *)
(*      (Resign), the home is elected once it applied what the survivor   *)
(*      sent (Elect, Drained); a newer claim fences an older one (Adopt);  *)
(*   3. defer (pfsync): a new connection's first packet is held at its     *)
(*      owner until every live peer acknowledged its state                 *)
(*      (DeferRelease), or the bound passes (DeferBound: FailOpen accepts, *)
(*      fail-closed drops, and the unconfirmed entry dies with the packet).*)
(*                                                                         *)
(* What is abstracted: the stream's machinery (above); VRRP (an election   *)
(* is one step; a split VRRP is sync_protocol's Split model, per group);   *)
(* a failure is the firewall's (a reboot: its kernel is empty when it      *)
(* returns; a process restart over a kept kernel is sync_protocol's        *)
(* Takeover/Restart, KernelVouched); conntrack timeouts (a peer's entries  *)
(* live as long as the owner's); TCP states (a version per change, made on *)
(* the owner only: the reply direction's change on a non-owner is in       *)
(* docs/active-active.md, not here).                                       *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets

\* ---------------------------------------------------------------------------
\* 1. Constants
\* ---------------------------------------------------------------------------
CONSTANTS
    Node,         \* node ids (naturals); node g is the home of VRRP group g
    ConnGroups,   \* the groups connections are created through (a subset of Node)
    ConnPerGroup, \* connection identities per group
    MaxVersion,   \* versions 1..MaxVersion per connection (bounds traffic)
    MaxTerm,      \* elections take terms 1..MaxTerm (per group)
    MaxFail,      \* how many times nodes fail
    FailOpen      \* the bound's verdict: TRUE accept, FALSE drop

ASSUME Node \subseteq Nat \ {0} /\ Cardinality(Node) >= 2
ASSUME ConnGroups \subseteq Node
ASSUME {ConnPerGroup, MaxVersion, MaxTerm, MaxFail} \subseteq Nat
ASSUME FailOpen \in BOOLEAN

Group == Node
\* A connection: the group it was created through, and an identity in it.
Conn == ConnGroups \X (1..ConnPerGroup)
GroupOf(c) == c[1]
NoConn == <<0, 0>>

Version == 0..MaxVersion
Table == [Conn -> Version]
EmptyTable == [c \in Conn |-> 0]

\* An epoch of a group is <<term, node>>, compared lexicographically; <<0, 0>>:
\* none (in claim: the node does not own the group).
Epoch == (0..MaxTerm) \X (Node \cup {0})
NoEpoch == <<0, 0>>
EpochLT(a, b) == a[1] < b[1] \/ (a[1] = b[1] /\ a[2] < b[2])

\* Messages on a channel. STATE: a change of connection c of group g (ver 0:
\* destroyed) by g's owner of epoch e; ACK: the receiver holds c at ver;
\* DUMP: the owner's table of group g (tab), which replaces the receiver's
\* entries of g. Every message has every field; unused: NoConn, 0.
MSG_STATE == "STATE"
MSG_ACK == "ACK"
MSG_DUMP == "DUMP"
Msg == [type : {MSG_STATE, MSG_ACK, MSG_DUMP}, g : Group, e : Epoch,
        c : Conn \cup {NoConn}, v : Version, tab : Table]

\* The deferred first packet of a connection: held at node `at`, its version,
\* the peers it waits for (live when it arrived); at = 0: nothing held.
Hold == [at : Node \cup {0}, ver : Version, wait : SUBSET Node]
NoHold == [at |-> 0, ver |-> 0, wait |-> {}]

\* How the first packet of a connection's current incarnation went (ghost):
\* "none" (no such incarnation, or destroyed), "held", "acked" (every live
\* peer acknowledged), "bound" (accepted at the bound: fail-open), "dropped"
\* (dropped at the bound: fail-closed), "lost" (its owner failed holding it,
\* every node that held the connection failed, or a cold start gave its
\* group to a node without it).
Release == {"none", "held", "acked", "bound", "dropped", "lost"}

\* ---------------------------------------------------------------------------
\* 2. Variables
\* ---------------------------------------------------------------------------
VARIABLES
    alive,     \* alive[n]: the firewall is up
    claim,     \* claim[n][g]: the epoch of g n owns it in; NoEpoch: n does not own g
    epoch,     \* epoch[n][g]: the newest epoch of g n has seen (persisted)
    synced,    \* synced[n]: groups n received a whole dump of since it came up
    kernel,    \* kernel[n]: n's conntrack table
    chan,      \* chan[a][b]: messages from a to b, in order
    held,      \* held[c]: c's deferred first packet, or NoHold
    failures,  \* failures so far
    lastVer,   \* lastVer[c]: newest version c ever had (versions grow)
    released   \* released[c]: how c's first packet went (ghost)

vars == <<alive, claim, epoch, synced, kernel, chan, held, failures, lastVer, released>>

\* ---------------------------------------------------------------------------
\* 3. Helpers
\* ---------------------------------------------------------------------------
Peers(n) == Node \ {n}
LivePeers(n) == {m \in Peers(n) : alive[m]}
Owns(n, g) == claim[n][g] # NoEpoch
Owners(g) == {n \in Node : alive[n] /\ Owns(n, g)}

\* Ready (keepalived's track script: `snep ctl ready`): up, and a whole dump
\* received of every group it does not own. Only a ready node is elected.
Ready(n) == alive[n] /\ \A g \in Group : Owns(n, g) \/ g \in synced[n]

Msg0 == [type |-> MSG_STATE, g |-> 1, e |-> NoEpoch, c |-> NoConn, v |-> 0,
         tab |-> EmptyTable]
StateMsg(g, e, c, v) == [Msg0 EXCEPT !.g = g, !.e = e, !.c = c, !.v = v]
AckMsg(g, e, c, v) == [StateMsg(g, e, c, v) EXCEPT !.type = MSG_ACK]
\* A dump of group g: the owner's entries of that group.
DumpMsg(n, g) == [Msg0 EXCEPT !.type = MSG_DUMP, !.g = g, !.e = claim[n][g],
                  !.tab = [c \in Conn |-> IF GroupOf(c) = g THEN kernel[n][c] ELSE 0]]

\* Send msg from n to each node of S (its channels to them).
SendTo(n, S, msg) ==
    [a \in Node |-> [b \in Node |->
        IF a = n /\ b \in S THEN Append(chan[a][b], msg) ELSE chan[a][b]]]

\* The stream of c's group from its owner n: every live peer.
Broadcast(n, c, v) == SendTo(n, LivePeers(n), StateMsg(GroupOf(c), claim[n][GroupOf(c)], c, v))

\* The head of the channel m -> n, when it is of type t.
Head1(m, n, t) == chan[m][n] # <<>> /\ Head(chan[m][n]).type = t
Pop(m, n) == [chan EXCEPT ![m][n] = Tail(@)]

\* A frame of an epoch older than the newest n has seen of its group is
\* refused (fencing: a stale owner's frames change nothing).
Stale(n, msg) == EpochLT(msg.e, epoch[n][msg.g])

\* n adopts a newer epoch of g; an older claim of its own is fenced: n no
\* longer owns g (keepalived then resigns it too: Resign).
Adopt(n, g, e) ==
    /\ epoch' = [epoch EXCEPT ![n][g] = IF EpochLT(@, e) THEN e ELSE @]
    /\ claim' = [claim EXCEPT ![n][g] = IF EpochLT(@, e) THEN NoEpoch ELSE @]

\* ---------------------------------------------------------------------------
\* Initial state: the cluster in sync, every node up and the owner of its own
\* group in term 1, no connection yet.
\* ---------------------------------------------------------------------------
Init ==
    /\ alive = [n \in Node |-> TRUE]
    /\ claim = [n \in Node |-> [g \in Group |-> IF g = n THEN <<1, n>> ELSE NoEpoch]]
    /\ epoch = [n \in Node |-> [g \in Group |-> <<1, g>>]]
    /\ synced = [n \in Node |-> Group \ {n}]
    /\ kernel = [n \in Node |-> EmptyTable]
    /\ chan = [a \in Node |-> [b \in Node |-> <<>>]]
    /\ held = [c \in Conn |-> NoHold]
    /\ failures = 0
    /\ lastVer = [c \in Conn |-> 0]
    /\ released = [c \in Conn |-> "none"]

\* ---------------------------------------------------------------------------
\* 4. The HA manager (keepalived, one VRRP group per node) and failures
\* ---------------------------------------------------------------------------
\* The firewall dies: its kernel, caches, channels and held packets are gone
\* (a held packet dies with it); its epochs are persisted. No packet held
\* elsewhere waits for it any more (snep.fsm.defer's peer_down, on the dead
\* timeout or on the peer's new session after a restart: the model makes it
\* one step with the failure; a peer that comes back is not waited for, it
\* gets the state in its group's dump).
Fail(n) ==
    /\ alive[n] /\ failures < MaxFail
    /\ failures' = failures + 1
    /\ alive' = [alive EXCEPT ![n] = FALSE]
    /\ claim' = [claim EXCEPT ![n] = [g \in Group |-> NoEpoch]]
    /\ synced' = [synced EXCEPT ![n] = {}]
    /\ kernel' = [kernel EXCEPT ![n] = EmptyTable]
    /\ chan' = [a \in Node |-> [b \in Node |-> IF n \in {a, b} THEN <<>> ELSE chan[a][b]]]
    /\ held' = [c \in Conn |-> IF held[c].at = n THEN NoHold
                               ELSE [held[c] EXCEPT !.wait = @ \ {n}]]
    /\ released' = [c \in Conn |->
                      IF \/ held[c].at = n
                         \/ released[c] = "acked" /\ ~\E m \in LivePeers(n) : kernel[m][c] # 0
                      THEN "lost" ELSE released[c]]
    /\ UNCHANGED <<epoch, lastVer>>

\* It comes back, empty, owning nothing, ready once every group's owner
\* dumped to it (SendDump, RecvDump).
Recover(n) ==
    /\ ~alive[n]
    /\ alive' = [alive EXCEPT ![n] = TRUE]
    /\ UNCHANGED <<claim, epoch, synced, kernel, chan, held, failures, lastVer, released>>

\* Nothing of group g is on its way to n: n has applied every frame the
\* group's earlier owners sent it (FIFO: the implementation knows it from
\* the resigning owner's last frame of its epoch, or from its death).
Drained(n, g) == \A m \in Node : \A i \in 1..Len(chan[m][n]) : chan[m][n][i].g # g

\* VRRP makes n master of group g, and snep on n claims it: a term above the
\* newest of g it has seen. A ready node is elected (a whole dump of every
\* group received: it holds what the group's owner held, warm, nothing to
\* commit), or any node when no live node is ready (a cold start: the whole
\* cluster was down; keepalived's priority penalty only orders candidates),
\* when no live node owns g (its owner failed: a survivor takes over; or the
\* survivor resigned it to its returned home), g's home first when it is
\* ready, and only once n has applied what g's earlier owner sent it
\* (Drained). The new owner dumps g to every live peer: what the failed
\* owner's peers got from it differs only in what no peer acknowledged, and
\* the new owner's table is the group's from now on.
\* Found by TLC (AATwice): without Drained, a home that took its group back
\* while the survivor's frame of a new connection was on its way to it
\* dumped a table without it, swept it from the survivor; the survivor's
\* held packet was then released when the home failed again (the dead
\* peer's rule), and no node held the connection.
Elect(n, g) ==
    /\ alive[n] /\ (Ready(n) \/ ~\E m \in Node : Ready(m)) /\ ~Owns(n, g)
    /\ epoch[n][g][1] < MaxTerm
    /\ Owners(g) = {}
    /\ n = g \/ ~Ready(g)
    /\ Drained(n, g)
    /\ LET e == <<epoch[n][g][1] + 1, n>>
       IN /\ claim' = [claim EXCEPT ![n][g] = e]
          /\ epoch' = [epoch EXCEPT ![n][g] = e]
          /\ chan' = [a \in Node |-> [b \in Node |->
                        IF a = n /\ b \in LivePeers(n)
                        THEN Append(chan[a][b], [DumpMsg(n, g) EXCEPT !.e = e])
                        ELSE chan[a][b]]]
    \* ghost: a cold start loses the acknowledged connections of g it lacks
    \* (they were only on nodes that are not ready: its dump sweeps them)
    /\ released' = [c \in Conn |->
                      IF ~Ready(n) /\ GroupOf(c) = g /\ released[c] = "acked" /\ kernel[n][c] = 0
                      THEN "lost" ELSE released[c]]
    /\ UNCHANGED <<alive, synced, kernel, held, failures, lastVer>>

\* A survivor that owns another node's group hands it back once that home is
\* up and ready (keepalived: the home's priority is higher once its track
\* script says ready; the survivor goes backup first, then the home is
\* elected: Elect). Its packets still held wait on as before.
Resign(n, g) ==
    /\ alive[n] /\ Owns(n, g) /\ n # g
    /\ Ready(g)
    /\ claim' = [claim EXCEPT ![n][g] = NoEpoch]
    /\ UNCHANGED <<alive, epoch, synced, kernel, chan, held, failures, lastVer, released>>

\* ---------------------------------------------------------------------------
\* 5. Traffic on the owner, and defer
\* ---------------------------------------------------------------------------
\* A new connection through group g's owner n: its first packet creates the
\* (unconfirmed) conntrack entry and is held; its state goes to every live
\* peer from the held packet itself (the kernel's NEW event comes only after
\* the verdict). The packet waits for every live peer.
ConnNew(n, c) ==
    /\ alive[n] /\ Owns(n, GroupOf(c))
    /\ kernel[n][c] = 0 /\ held[c] = NoHold /\ lastVer[c] < MaxVersion
    /\ LET v == lastVer[c] + 1
       IN /\ kernel' = [kernel EXCEPT ![n][c] = v]
          /\ lastVer' = [lastVer EXCEPT ![c] = v]
          /\ held' = [held EXCEPT ![c] = [at |-> n, ver |-> v, wait |-> LivePeers(n)]]
          /\ released' = [released EXCEPT ![c] = "held"]
          /\ chan' = Broadcast(n, c, v)
    /\ UNCHANGED <<alive, claim, epoch, synced, failures>>

\* A later change (a TCP state) of a released connection, on its owner.
ConnUpdate(n, c) ==
    /\ alive[n] /\ Owns(n, GroupOf(c))
    /\ kernel[n][c] # 0 /\ held[c] = NoHold /\ lastVer[c] < MaxVersion
    /\ LET v == lastVer[c] + 1
       IN /\ kernel' = [kernel EXCEPT ![n][c] = v]
          /\ lastVer' = [lastVer EXCEPT ![c] = v]
          /\ chan' = Broadcast(n, c, v)
    /\ UNCHANGED <<alive, claim, epoch, synced, held, failures, released>>

\* The connection closes (or times out) on its owner: DESTROY to the peers.
ConnDestroy(n, c) ==
    /\ alive[n] /\ Owns(n, GroupOf(c))
    /\ kernel[n][c] # 0 /\ held[c] = NoHold
    /\ kernel' = [kernel EXCEPT ![n][c] = 0]
    /\ released' = [released EXCEPT ![c] = "none"]
    /\ chan' = Broadcast(n, c, 0)
    /\ UNCHANGED <<alive, claim, epoch, synced, held, failures, lastVer>>

\* Every peer the packet waits for acknowledged the state or failed: the
\* packet is accepted (snep.fsm.defer: ACKED, PEER_GONE, NO_PEERS).
DeferRelease(n, c) ==
    /\ held[c].at = n
    /\ held[c].wait = {}
    /\ held' = [held EXCEPT ![c] = NoHold]
    /\ released' = [released EXCEPT ![c] = "acked"]
    /\ UNCHANGED <<alive, claim, epoch, synced, kernel, chan, failures, lastVer>>

\* The bound passes first (a timer: at any moment while the packet is
\* held). Fail-open: accepted, the state may not be on every peer yet.
\* Fail-closed: dropped; the unconfirmed entry dies with the packet, and
\* since its state was sent from the packet, snep sends its DESTROY.
DeferBound(n, c) ==
    /\ held[c].at = n
    /\ held' = [held EXCEPT ![c] = NoHold]
    /\ IF FailOpen
       THEN /\ released' = [released EXCEPT ![c] = "bound"]
            /\ UNCHANGED <<kernel, chan>>
       ELSE /\ released' = [released EXCEPT ![c] = "dropped"]
            /\ kernel' = [kernel EXCEPT ![n][c] = 0]
            /\ chan' = Broadcast(n, c, 0)
    /\ UNCHANGED <<alive, claim, epoch, synced, failures, lastVer>>

\* ---------------------------------------------------------------------------
\* 6. The stream (sync_protocol's, abstracted to a reliable FIFO channel)
\* ---------------------------------------------------------------------------
\* A live owner of g dumps it to a live peer that has no whole dump of it
\* (a node that came back), once per need.
SendDump(n, m, g) ==
    /\ alive[n] /\ Owns(n, g) /\ m # n /\ alive[m]
    /\ g \notin synced[m]
    /\ \A i \in 1..Len(chan[n][m]) : chan[n][m][i].type # MSG_DUMP \/ chan[n][m][i].g # g
    /\ chan' = [chan EXCEPT ![n][m] = Append(@, DumpMsg(n, g))]
    /\ UNCHANGED <<alive, claim, epoch, synced, kernel, held, failures, lastVer, released>>

\* A STATE frame: applied to the kernel (no external cache: warm) and
\* acknowledged, unless it is stale (refused, not acknowledged). A newer
\* epoch is adopted; an older claim of n's own on the group is fenced.
RecvState(n, m) ==
    /\ Head1(m, n, MSG_STATE)
    /\ LET msg == Head(chan[m][n]) IN
       IF Stale(n, msg)
       THEN /\ chan' = Pop(m, n)
            /\ UNCHANGED <<claim, epoch, kernel>>
       ELSE /\ kernel' = [kernel EXCEPT ![n][msg.c] = msg.v]
            /\ Adopt(n, msg.g, msg.e)
            /\ chan' = [Pop(m, n) EXCEPT ![n][m] =
                          Append(@, AckMsg(msg.g, msg.e, msg.c, msg.v))]
    /\ UNCHANGED <<alive, synced, held, failures, lastVer, released>>

\* A DUMP of group g: the receiver's entries of g become the dump's (what
\* the dump does not hold goes: mark and sweep), and g is synced.
RecvDump(n, m) ==
    /\ Head1(m, n, MSG_DUMP)
    /\ LET msg == Head(chan[m][n]) IN
       /\ chan' = Pop(m, n)
       /\ IF Stale(n, msg)
          THEN UNCHANGED <<claim, epoch, kernel, synced>>
          ELSE /\ kernel' = [kernel EXCEPT ![n] =
                               [c \in Conn |-> IF GroupOf(c) = msg.g THEN msg.tab[c] ELSE @[c]]]
               /\ synced' = [synced EXCEPT ![n] = @ \cup {msg.g}]
               /\ Adopt(n, msg.g, msg.e)
    /\ UNCHANGED <<alive, held, failures, lastVer, released>>

\* An ACK: the held packet of that connection (that version) no longer
\* waits for its sender.
RecvAck(n, m) ==
    /\ Head1(m, n, MSG_ACK)
    /\ LET msg == Head(chan[m][n]) IN
       /\ chan' = Pop(m, n)
       /\ held' = IF held[msg.c].at = n /\ held[msg.c].ver = msg.v
                  THEN [held EXCEPT ![msg.c].wait = @ \ {m}]
                  ELSE held
    /\ UNCHANGED <<alive, claim, epoch, synced, kernel, failures, lastVer, released>>

\* ---------------------------------------------------------------------------
\* 7. Next, fairness
\* ---------------------------------------------------------------------------
Next ==
    \/ \E n \in Node : Fail(n) \/ Recover(n)
    \/ \E n \in Node, g \in Group : Elect(n, g) \/ Resign(n, g)
    \/ \E n \in Node, c \in Conn :
          \/ ConnNew(n, c) \/ ConnUpdate(n, c) \/ ConnDestroy(n, c)
          \/ DeferRelease(n, c) \/ DeferBound(n, c)
    \/ \E n, m \in Node :
          \/ RecvState(n, m) \/ RecvDump(n, m) \/ RecvAck(n, m)
          \/ \E g \in Group : SendDump(n, m, g)

Spec == Init /\ [][Next]_vars

\* The protocol's steps and VRRP are weakly fair; failures, returns, traffic
\* and the bound are not (the bound need not fire: the acks may come first).
Fairness ==
    /\ \A n \in Node, g \in Group : WF_vars(Elect(n, g)) /\ WF_vars(Resign(n, g))
    /\ \A n \in Node, c \in Conn : WF_vars(DeferRelease(n, c))
    /\ \A n, m \in Node :
          /\ WF_vars(RecvState(n, m)) /\ WF_vars(RecvDump(n, m)) /\ WF_vars(RecvAck(n, m))
          /\ \A g \in Group : WF_vars(SendDump(n, m, g))
FairSpec == Spec /\ Fairness

\* ---------------------------------------------------------------------------
\* 8. Properties (spec/README.md says what each means for a user)
\* ---------------------------------------------------------------------------
TypeOK ==
    /\ alive \in [Node -> BOOLEAN]
    /\ claim \in [Node -> [Group -> Epoch]]
    /\ epoch \in [Node -> [Group -> Epoch]]
    /\ synced \in [Node -> SUBSET Group]
    /\ kernel \in [Node -> Table]
    /\ \A a, b \in Node : chan[a][b] \in Seq(Msg)
    /\ held \in [Conn -> Hold]
    /\ failures \in 0..MaxFail
    /\ lastVer \in [Conn -> Version]
    /\ released \in [Conn -> Release]

\* Every connection has at most one owner: at most one live node claims its
\* group, its claim is its own (<<term, itself>>) and the newest epoch of
\* the group it has seen. (With a split VRRP two nodes would claim one group
\* in different epochs, the older fenced: sync_protocol's Split model, per
\* group; Adopt fences here too.)
AtMostOneOwner ==
    \A c \in Conn :
        LET g == GroupOf(c) IN
        /\ Cardinality(Owners(g)) <= 1
        /\ \A n \in Owners(g) : claim[n][g][2] = n /\ claim[n][g] = epoch[n][g]

\* No acknowledged state is lost when its owner fails: a connection whose
\* first packet was released on the acknowledgements of every live peer
\* (not by the bound) is in the kernel of every live node that owns its group,
\* through any number of takeovers and returns, until it is destroyed, as
\* long as some node holding it survives (Fail marks it "lost" when the last
\* one fails) and no cold start (no ready node left, Elect) gives its group to
\* a node without it (Elect marks it "lost": conntrackd and sync_protocol,
\* whose NoAckedStateLost is about a promotion while in sync, share this
\* limit: with every node that was in sync gone, what only a resyncing node
\* held is not promised).
\* (Released by the bound: the bound's case, no such promise.)
NoAckedStateLostOnOwnerFailure ==
    \A c \in Conn, n \in Node :
        (released[c] = "acked" /\ alive[n] /\ Owns(n, GroupOf(c))) => kernel[n][c] # 0

\* A deferred packet is released only when every live peer holds its state,
\* or by the bound: the step that releases c's first packet on
\* acknowledgements (released = "acked") finds c in the kernel of every live
\* peer that has a whole dump of c's group. A peer without one came up since
\* the packet was held: it is not ready, VRRP gives it no group (no traffic),
\* and the dump it waits for carries c. The bound's step (DeferBound) makes
\* no such promise: that is the bound's case.
DeferReleasedOnlyWhenHeldStep ==
    \A c \in Conn :
        (held[c] # NoHold /\ released'[c] = "acked") =>
            \A m \in Peers(held[c].at) :
                (alive'[m] /\ GroupOf(c) \in synced'[m]) => kernel'[m][c] = held[c].ver
DeferReleasedOnlyWhenHeld == [][DeferReleasedOnlyWhenHeldStep]_vars

\* Epochs only grow (what fencing relies on).
EpochMonotonic ==
    [][\A n \in Node, g \in Group : ~EpochLT(epoch'[n][g], epoch[n][g])]_vars

\* Liveness: a node that returns and stays up gets its group back (it
\* resyncs, is ready, the survivor resigns, the home is elected).
ReturnsHome == \A g \in Group : <>[]alive[g] => <>[](Owns(g, g) /\ Owners(g) = {g})
\* Every group has an owner again once failures stop (some node is up).
GroupsOwned == \A g \in Group : <>[](\E n \in Node : alive[n]) => <>[](Owners(g) # {})

\* ---------------------------------------------------------------------------
\* Reachability (each "not reached" must be violated by TLC)
\* ---------------------------------------------------------------------------
\* A survivor owns a failed node's group and holds a connection of it that
\* was acknowledged.
TakeoverNotReached ==
    ~\E n, g \in Node :
        /\ n # g /\ ~alive[g] /\ alive[n] /\ Owns(n, g)
        /\ \E c \in Conn : GroupOf(c) = g /\ released[c] = "acked" /\ kernel[n][c] # 0
\* The failed node came back and owns its group again, alone (a term above
\* the survivor's), holding an acknowledged connection of it.
ReturnNotReached ==
    ~\E g \in Node :
        /\ Owners(g) = {g} /\ claim[g][g][1] >= 3
        /\ \E c \in Conn : GroupOf(c) = g /\ released[c] = "acked" /\ kernel[g][c] # 0
\* The bound's case is real: a connection whose first packet the bound
\* released (fail-open) is missing from its group's owner (the owner failed
\* before the peer had the state).
BoundStateLostNotReached ==
    ~\E c \in Conn, n \in Node :
        /\ released[c] = "bound" /\ alive[n] /\ Owns(n, GroupOf(c)) /\ kernel[n][c] = 0
\* A deferred packet released by the bound.
BoundReleaseNotReached == \A c \in Conn : released[c] \notin {"bound", "dropped"}
\* A deferred packet released while its owner had a live peer (on its ack).
AckReleaseNotReached ==
    ~\E c \in Conn : released[c] = "acked" /\ \E n \in Node : alive[n] /\ Owns(n, GroupOf(c))
                                           /\ \E m \in LivePeers(n) : kernel[m][c] # 0
=============================================================================
