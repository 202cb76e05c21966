------------------------------ MODULE MCSynced -------------------------------
(* A synchronized cluster, as the initial state of a model that studies    *)
(* what comes after start-up: node `first` is VRRP master and primary in   *)
(* epoch <<1, first>>, its dump of an empty table (one frame, seq 0,       *)
(* BULK_START and BULK_END) applied and acknowledged by every other node,  *)
(* which is BACKUP; every session bound; nothing in flight. It is a reachable state of Spec: the         *)
(* "Start" models check that (TLC must violate SyncedStateNotReached).     *)
EXTENDS sync_protocol

SyncedState(first) ==
    /\ role = [n \in Node |-> IF n = first THEN PRIMARY ELSE BACKUP]
    /\ master = [n \in Node |-> n = first]
    /\ linkUp = AllLinks
    /\ env = [fail |-> 0, ha |-> 0, cut |-> 0, loss |-> 0, dup |-> 0, replay |-> 0, restart |-> 0]
    /\ kernel = [n \in Node |-> EmptyTable]
    /\ internal = [n \in Node |-> EmptyTable]
    /\ external = [n \in Node |-> EmptyTable]
    /\ epoch = [n \in Node |-> <<1, first>>]
    /\ sess = [n \in Node |-> 1]
    /\ bound = [n \in Node |-> [m \in Node |-> IF m = n THEN 0 ELSE 1]]
    /\ nextSeq = [n \in Node |-> IF n = first THEN 1 ELSE 0]
    /\ queue = [n \in Node |-> <<>>]
    /\ peerAck = [n \in Node |-> [m \in Node |-> IF n = first /\ m # first THEN 1 ELSE 0]]
    /\ peerLive = [n \in Node |-> [m \in Node |-> TRUE]]
    /\ bulk = [n \in Node |-> "idle"]
    /\ todo = [n \in Node |-> {}]
    /\ dirty = [n \in Node |-> {}]
    /\ behind = [n \in Node |-> [m \in Node |-> FALSE]]
    /\ resume = [n \in Node |-> [m \in Node |-> NoSeq]]
    /\ ackedRecently = [n \in Node |-> [m \in Node |-> n = first /\ m # first]]
    /\ expect = [n \in Node |-> IF n = first THEN 0 ELSE 1]
    /\ ackFrom = [n \in Node |-> IF n = first THEN 0 ELSE 1]
    /\ inBulk = [n \in Node |-> FALSE]
    /\ marked = [n \in Node |-> {}]
    /\ needSync = [n \in Node |-> FALSE]
    /\ msgs = EmptyBag
    /\ stash = {}
    /\ lastVer = [c \in Conn |-> 0]
    /\ born = [c \in Conn |-> 0]
    /\ owed = [n \in Node |-> {}]
    /\ promoted = [n \in Node |-> NotPromoted]
    /\ dead = [n \in Node |-> [c \in Conn |-> 0]]
    /\ dumped = [n \in Node |-> n # first]
    /\ overflow = FALSE
    /\ failedAs = [n \in Node |-> "none"]
    /\ fenced = FALSE
    /\ repairs = {}

SyncedStateNotReached == ~SyncedState(1)
=============================================================================
