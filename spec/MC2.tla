------------------------------- MODULE MC2 ----------------------------------
(* Two nodes, every scenario: model values and bounds for TLC.             *)
EXTENDS sync_protocol, TLC

CONSTANTS MaxSeq,   \* frames a primary sends per epoch (state constraint)
          MaxMsgs   \* messages in flight (state constraint)

\* Connections are interchangeable; nodes are not (ids break epoch ties).
ConnSymmetry == Permutations(Conn)

\* The ghosts that only the reachability invariants read (failedAs, fenced,
\* repairs) are left out of the state's identity in the safety runs: states
\* that differ only in them have the same futures for every other property.
SafetyView == <<role, linkUp, env, kernel, internal, external, epoch,
                nextSeq, queue, peerAck, peerLive, bulk, todo, dirty,
                behind, resume, ackedRecently,
                expect, ackFrom, inBulk, marked, needSync, msgs,
                lastVer, born, ackd>>

StateConstraint ==
    /\ \A n \in Node : nextSeq[n] <= MaxSeq
    /\ BagCardinality(msgs) <= MaxMsgs
=============================================================================
