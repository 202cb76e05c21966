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

\* The non-vacuity check (spec/README.md; not in the manifest): the same
\* without the fairness of RecvState. TLC must find Converges violated (it
\* does: the backup never receives the frames in flight, a stuttering tail).
UnfairRecvState ==
    /\ \A n \in Node :
          /\ WF_vars(Notify(n)) /\ WF_vars(FlushIncremental(n))
          /\ WF_vars(SendBulk(n)) /\ WF_vars(Retransmit(n)) /\ WF_vars(SendAlive(n))
    /\ \A n, m \in Node :
          /\ WF_vars(RecvAck(n, m)) /\ WF_vars(RecvNack(n, m))
          /\ WF_vars(RecvResyncRequest(n, m)) /\ WF_vars(PeerTimeout(n, m))
          /\ WF_vars(AckAges(n, m)) /\ WF_vars(RecvAlive(n, m))
          /\ WF_vars(SendAck(n, m)) /\ WF_vars(RequestResync(n, m))
          /\ WF_vars(RecvHello(n, m))
BrokenSpec == Init /\ [][SmallNext]_vars /\ UnfairRecvState
=============================================================================
