------------------------------ MODULE MCLive --------------------------------
(* Liveness: the fair spec, no symmetry (TLC's liveness checking and       *)
(* symmetry do not mix), no state constraint (the fault and traffic        *)
(* budgets make the state space finite).                                   *)
EXTENDS sync_protocol, TLC
=============================================================================
