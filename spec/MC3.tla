------------------------------- MODULE MC3 ----------------------------------
(***************************************************************************)
(* Three nodes, from a synchronized cluster (MCSynced: node 1 primary,     *)
(* 2 and 3 backups in sync); MC2's bounds (MaxSeq, MaxMsgs), symmetry and  *)
(* constraint. Two models:                                                 *)
(*   MC3.cfg        two process failures that stay down, one link cut:     *)
(*                  the takeover, the other backup following the new       *)
(*                  primary, a second takeover by the last node;           *)
(*   MC3Return.cfg  one failure, and the failed process comes back into    *)
(*                  the three-node cluster.                                *)
(* Two failures with returns as well do not finish in 15 minutes (the      *)
(* figures are in spec/README.md); start-up with three nodes is left to    *)
(* MC3_Start, which only shows that the synchronized cluster is reached.   *)
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

\* Reachability (must be violated; MC3_Start checks MCSynced's
\* SyncedStateNotReached): after two failures the last node took over, holding a
\* connection it acknowledged to the second primary (MC3_TwoTakeovers); a
\* failed process came back and is BACKUP in the new primary's epoch with
\* the primary's non-empty table (MC3Return_Rejoin).
TwoTakeoversNotReached ==
    ~\E n \in Node :
        /\ role[n] = PRIMARY /\ epoch[n][1] = 3 /\ env.fail = 2
        /\ \E c \in ackd[n] : kernel[n][c] # 0
RejoinNotReached ==
    ~\E b, p \in Node :
        /\ failedAs[b] # "none" /\ role[b] = BACKUP
        /\ role[p] = PRIMARY /\ epoch[b] = epoch[p] /\ epoch[p][1] = 2
        /\ Present(kernel[p]) # {} /\ SameTable(external[b], kernel[p])
=============================================================================
