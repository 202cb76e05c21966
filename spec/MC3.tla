------------------------------- MODULE MC3 ----------------------------------
(* Three nodes, two failures: model values and bounds for TLC.             *)
EXTENDS sync_protocol, TLC

CONSTANTS MaxSeq,   \* frames a primary sends per epoch (state constraint)
          MaxMsgs   \* messages in flight (state constraint)

\* Connections are interchangeable; nodes are not (ids break epoch ties).
ConnSymmetry == Permutations(Conn)

StateConstraint ==
    /\ \A n \in Node : nextSeq[n] <= MaxSeq
    /\ BagCardinality(msgs) <= MaxMsgs
=============================================================================
