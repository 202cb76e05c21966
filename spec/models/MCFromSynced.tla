---------------------------- MODULE MCFromSynced ----------------------------
(***************************************************************************)
(* Safety models that start from a synchronized cluster (MCSynced) with    *)
(* MC2's bounds (MaxSeq, MaxMsgs), symmetry and constraint: MC3,           *)
(* MC3Return, and two nodes at the weak and incremental levels with        *)
(* updates (MCFromSynced_Weak, MCFromSynced_Incremental).                  *)
(***************************************************************************)
EXTENDS MC2, MCSynced

\* A failed process stays down (only Recover brings a DOWN node up): MC3's
\* ACTION_CONSTRAINT.
StaysDown == \A n \in Node : role[n] = DOWN => role'[n] = DOWN

FromSynced == SyncedState(1) /\ [][Next]_vars

=============================================================================
