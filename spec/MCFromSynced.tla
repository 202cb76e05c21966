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


\* Values a node's role makes irrelevant until they are overwritten: a
\* non-primary's internal cache (Recover and Promote set it), next seq and
\* acknowledged positions (Promote resets them). States that differ only
\* there have the same futures, so the view leaves them out (on top of
\* MC2's SafetyView, which leaves out the reachability-only ghosts).
IfPrimary(n, x, none) == IF role[n] = PRIMARY THEN x ELSE none
LiveView ==
    <<role, linkUp, env, kernel,
      [n \in Node |-> IfPrimary(n, internal[n], EmptyTable)], external, epoch,
      [n \in Node |-> IfPrimary(n, nextSeq[n], 0)], queue,
      [n \in Node |-> IfPrimary(n, peerAck[n], [m \in Node |-> 0])], peerLive,
      bulk, todo, dirty, behind, resume, ackedRecently,
      expect, ackFrom, inBulk, marked, needSync, msgs, lastVer, born, ackd>>
=============================================================================
