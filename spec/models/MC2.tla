------------------------------- MODULE MC2 ----------------------------------
(* Two nodes, every scenario: model values and bounds for TLC.             *)
EXTENDS sync_protocol, TLC

CONSTANTS MaxSeq,   \* frames a primary sends per epoch (state constraint)
          MaxMsgs   \* messages in flight (state constraint)

\* Connections are interchangeable; nodes are not (ids break epoch ties).
ConnSymmetry == Permutations(Conn)

\* The state's identity in the safety runs leaves out what cannot change any
\* future: the ghosts that only the reachability invariants read (failedAs,
\* fenced, repairs), and values a node's role makes dead until they are
\* overwritten: a non-primary's internal cache (Recover and Promote set it),
\* next seq and acknowledged positions (Promote resets them).
IfPrimary(n, x, none) == IF role[n] = PRIMARY THEN x ELSE none
SafetyView ==
    <<role, linkUp, env, kernel,
      [n \in Node |-> IfPrimary(n, internal[n], EmptyTable)], external, epoch,
      [n \in Node |-> IfPrimary(n, nextSeq[n], 0)], queue,
      [n \in Node |-> IfPrimary(n, peerAck[n], [m \in Node |-> 0])], peerLive,
      bulk, todo, dirty, behind, resume, ackedRecently,
      expect, ackFrom, inBulk, marked, needSync, msgs, lastVer, born, ackd>>

StateConstraint ==
    /\ \A n \in Node : nextSeq[n] <= MaxSeq
    /\ BagCardinality(msgs) <= MaxMsgs
=============================================================================
