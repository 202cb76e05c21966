------------------------------ MODULE MCActive ------------------------------
(***************************************************************************)
(* The active-active models' module (spec/models.toml, profile "aa"): the  *)
(* fair specification's non-vacuity variant. The reachability checks live *)
(* in active_active.tla itself.                                            *)
(***************************************************************************)
EXTENDS active_active, TLC

\* ReturnsHome without the fairness of VRRP's elections: a returned home that
\* is ready may never be elected; TLC must find ReturnsHome violated.
BrokenFairness ==
    /\ \A n \in Node, g \in Group : WF_vars(Resign(n, g))
    /\ \A n \in Node, c \in Conn : WF_vars(DeferRelease(n, c))
    /\ \A n, m \in Node :
          /\ WF_vars(RecvState(n, m)) /\ WF_vars(RecvDump(n, m)) /\ WF_vars(RecvAck(n, m))
          /\ \A g \in Group : WF_vars(SendDump(n, m, g))
BrokenFairSpec == Spec /\ BrokenFairness
=============================================================================
