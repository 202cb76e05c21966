--------------------------- MODULE MCLiveTakeover ---------------------------
(***************************************************************************)
(* Liveness through a takeover, on a finite graph: the fair spec from a    *)
(* synchronized cluster of two (MCSynced), the environment narrowed (the   *)
(* protocol's steps and their fairness are the full spec's, as in          *)
(* MCLiveSmall). The primary (node 1) may fail; then node 2 takes over;    *)
(* node 1 may come back and must converge to node 2's table (fenced,       *)
(* resynchronized). Connections are created on whichever node is primary. *)
(***************************************************************************)
EXTENDS MCSynced, TLC

TakeoverEnvironment ==
    \/ Fail(1) \/ Recover(1)
    \/ role[1] = DOWN /\ Promote(2)
    \/ LoseMsg \/ DuplicateMsg
    \/ \E n \in Node, c \in Conn : ConnNew(n, c)

TakeoverSpec == SyncedState(1) /\ [][TakeoverEnvironment \/ Protocol]_vars /\ Fairness

\* The non-vacuity check (MCLiveTakeover_Unfair): without the fairness of
\* RecvState, TLC must find Converges violated.
BrokenSpec == SyncedState(1) /\ [][TakeoverEnvironment \/ Protocol]_vars /\ FairnessButRecvState
=============================================================================
