------------------------------- MODULE MCLive -------------------------------
(***************************************************************************)
(* Liveness on finite graphs: the fair spec with the environment narrowed  *)
(* (the protocol's steps, the HA manager's elections and their fairness    *)
(* are the full spec's). Narrowing the environment only removes            *)
(* behaviours, never adds any, and fairness is not touched, so a pass here *)
(* is a real pass for these behaviours (no state constraint: TLC reports   *)
(* spurious liveness violations at a constraint's boundary).               *)
(*                                                                         *)
(*   StartSpec     start-up: connections created, network faults per the   *)
(*                 budgets (loss, duplication, dumps restarted);           *)
(*   TakeoverSpec  from a synchronized cluster: the primary fails, VRRP    *)
(*                 elects the backup, the former primary may come back;    *)
(*                 connections created and destroyed on whichever node is  *)
(*                 primary; loss, duplication, link cuts per the budgets   *)
(*                 (dumps restarted on their own: StartSpec only; here     *)
(*                 they made LiveFaults 477,327 states and 15 min, from    *)
(*                 40,235 and 1 min).                                      *)
(* BrokenStart / BrokenTakeover: the same without RecvState's fairness; TLC *)
(* must then violate Converges (non-vacuity).                              *)
(***************************************************************************)
EXTENDS sync_protocol, MCSynced, TLC

StartEnvironment ==
    \/ LoseMsg \/ DuplicateMsg \/ \E n \in Node : RestartBulk(n)
    \/ \E n \in Node, c \in Conn : ConnNew(n, c)

TakeoverEnvironment ==
    \/ Fail(1) \/ Recover(1)
    \/ LoseMsg \/ DuplicateMsg
    \/ \E a, b \in Node : LinkDown(a, b) \/ LinkUp(a, b)
    \/ \E n \in Node, c \in Conn : ConnNew(n, c) \/ ConnDestroy(n, c)

\* The HA manager's elections are part of the fair protocol here (VRRP elects).
Elections == \E n \in Node : Promote(n) \/ Resign(n)

StartSpec == Init /\ [][StartEnvironment \/ Elections \/ Protocol]_vars /\ Fairness
TakeoverSpec == SyncedState(1) /\ [][TakeoverEnvironment \/ Elections \/ Protocol]_vars /\ Fairness

BrokenStart == Init /\ [][StartEnvironment \/ Elections \/ Protocol]_vars /\ FairnessButRecvState
BrokenTakeover == SyncedState(1) /\ [][TakeoverEnvironment \/ Elections \/ Protocol]_vars /\ FairnessButRecvState
=============================================================================
