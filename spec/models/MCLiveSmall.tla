---------------------------- MODULE MCLiveSmall -----------------------------
(* Liveness on a small, finite graph: the fair spec with the environment   *)
(* narrowed (the protocol's steps and their fairness are the full spec's). *)
(* Node 1 is the only one the HA manager promotes (once: MaxTerm 1), and   *)
(* the only traffic is the creation of connections (one event per          *)
(* connection: MaxVersion 1). Narrowing the environment only removes       *)
(* behaviours, never adds any, and fairness is not touched, so a pass here *)
(* is a real pass for these behaviours (no state constraint: TLC reports   *)
(* spurious liveness violations at a constraint's boundary).               *)
EXTENDS sync_protocol, TLC

SmallEnvironment ==
    \/ Promote(1)
    \/ LoseMsg \/ DuplicateMsg
    \/ \E c \in Conn : ConnNew(1, c)

SmallNext == SmallEnvironment \/ Protocol

SmallSpec == Init /\ [][SmallNext]_vars /\ Fairness

\* The non-vacuity check (MCLiveSmall_Unfair): the same without the fairness
\* of RecvState. TLC must find Converges violated (the backup never receives
\* the frames in flight: a stuttering tail), or Converges holds for nothing.
BrokenSpec == Init /\ [][SmallNext]_vars /\ FairnessButRecvState
=============================================================================
