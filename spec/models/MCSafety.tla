------------------------------ MODULE MCSafety ------------------------------
(***************************************************************************)
(* The safety models' module (spec/models.toml binds the constants):       *)
(* symmetry, the state's identity (VIEW), the bound on sequence numbers,   *)
(* the start from a synchronized cluster, and the reachability checks of   *)
(* the models that start from there.                                       *)
(***************************************************************************)
EXTENDS sync_protocol, MCSynced, TLC

CONSTANTS MaxSeq    \* frames a primary sends per epoch (state constraint)

\* Connections are interchangeable; nodes are not (ids break epoch ties).
ConnSymmetry == Permutations(Conn)

\* The state's identity leaves out what cannot change any future: the ghosts
\* that only the reachability invariants read (failedAs, fenced, repairs),
\* and values a node's role makes dead until they are overwritten: a
\* non-primary's internal cache (Recover and Promote set it), next seq and
\* acknowledged positions (Promote resets them), the epoch a primary
\* followed before it was promoted (read only while it is primary). The
\* overflow flag is left out too (FloodView keeps it, for NoOverflow).
IfPrimary(n, x, none) == IF role[n] = PRIMARY THEN x ELSE none
SafetyView ==
    <<role, master, linkUp, env, kernel,
      [n \in Node |-> IfPrimary(n, internal[n], EmptyTable)], external, epoch,
      sess, bound,
      [n \in Node |-> IfPrimary(n, nextSeq[n], 0)], queue,
      [n \in Node |-> IfPrimary(n, peerAck[n], [m \in Node |-> 0])], peerLive,
      bulk, todo, dirty, behind, resume, ackedRecently,
      expect, ackFrom, inBulk, marked, needSync, msgs, stash, lastVer, born, owed,
      [n \in Node |-> IfPrimary(n, promoted[n], NotPromoted)], dead, dumped>>
FloodView == <<SafetyView, overflow>>

\* Frames per epoch are bounded by the model (traffic and dumps are bounded
\* by the budgets; this keeps sequence numbers finite). The network is
\* bounded inside the actions (MaxInFlight): no constraint prunes it.
StateConstraint == \A n \in Node : nextSeq[n] <= MaxSeq

\* The models that study what comes after start-up.
FromSynced == SyncedState(1) /\ [][Next]_vars

\* Narrowing the environment of the three-node models (ACTION_CONSTRAINT): only
\* node 1, the first primary, fails (a backup's failure and return is checked
\* with two nodes). Rejoin, under the same constraint, shows its return reached.
OnlyTheFirstPrimaryFails == \A n \in Node : (Up(role[n]) /\ role'[n] = DOWN) => n = 1

\* ReplayRestart's narrowing: the backup (node 2) fails first and comes back,
\* then the primary (node 1) fails for good: the takeover by a node that
\* restarted, with the adversary's captures from its former life.
BackupThenPrimaryFails ==
    /\ \A n \in Node : (Up(role[n]) /\ role'[n] = DOWN) => IF env.fail = 0 THEN n = 2 ELSE n = 1
    /\ role[1] = DOWN => role'[1] = DOWN

\* Reachability (each must be violated where a model says so): after two
\* failures the last node took over in sync, holding a connection it
\* acknowledged (TwoTakeovers); a failed process came back and is BACKUP in
\* the new primary's epoch with its table (Rejoin); a primary took a term
\* above an epoch it merely heard of, and a node that failed follows it
\* (Retake); keepalived's master, fenced by another primary since gone, took
\* over again (Reassert).
TwoTakeoversNotReached ==
    ~\E n \in Node :
        /\ role[n] = PRIMARY /\ env.fail = 2 /\ promoted[n].ready
        /\ \E x \in owed[n] : x[1] = promoted[n].from /\ kernel[n][x[2]] # 0
RejoinNotReached ==
    ~\E b, p \in Node :
        /\ failedAs[b] # "none" /\ role[b] = BACKUP
        /\ role[p] = PRIMARY /\ epoch[b] = epoch[p] /\ epoch[p][1] >= 2
        /\ Present(kernel[p]) # {} /\ SameTable(external[b], kernel[p])
RetakeNotReached ==
    ~\E n \in Node :
        /\ role[n] = PRIMARY /\ epoch[n][1] > promoted[n].from[1] + 1
        /\ \E m \in Peers(n) : failedAs[m] # "none" /\ role[m] = BACKUP /\ epoch[m] = epoch[n]
ReassertNotReached ==
    ~\E n \in Node : role[n] = PRIMARY /\ promoted[n].how = "reasserted"
=============================================================================
