------------------------------- MODULE Trace --------------------------------
(***************************************************************************)
(* Trace validation (etcd raft style): is a trace exported by the model    *)
(* tests (model_tests, SNEP_TRACE_DIR=...) a behaviour of sync_protocol?   *)
(*                                                                         *)
(* The trace is a JSON file {"consts": ..., "log": [...]}; each log record *)
(* is either                                                               *)
(*   {"set": S}: the abstraction of the implementation's state (the model  *)
(*     tests re-abstract before every move; also operator commands, which  *)
(*     the spec does not have), or                                         *)
(*   {"action": A, "args": [...], "state": S}: the spec action A, with the *)
(*     parameters the Python mirror used, and the state it computed.       *)
(* TLC checks that each action record is a step of the named spec action  *)
(* (existential choices included) that leads exactly to the logged state:  *)
(* model_tests/model.py computes the spec's Next.                          *)
(* `snep spec trace-check TRACE.json` writes the .cfg and runs TLC; the    *)
(* trace is accepted when TLC reports the Done invariant violated (the     *)
(* end of the log reached) and rejected when it stops earlier (deadlock).  *)
(***************************************************************************)
EXTENDS sync_protocol, Json, TLC

CONSTANT TraceFile   \* absolute path of the trace (JSON)

Log == JsonDeserialize(TraceFile).log

VARIABLE l           \* the next log record to check

ToSet(s) == {s[i] : i \in DOMAIN s}
S(n) == ToString(n)

\* The logged state as values of the spec's variables (JSON keys are strings).
AsBag(ps) == [x \in {p[1] : p \in ToSet(ps)} |-> (CHOOSE p \in ToSet(ps) : p[1] = x)[2]]
TableOf(t) == [c \in Conn |-> t[c]]

IsState(st) ==
    /\ role' = [n \in Node |-> st.role[S(n)]]
    /\ master' = [n \in Node |-> st.master[S(n)]]
    /\ linkUp' = {ToSet(p) : p \in ToSet(st.linkUp)}
    /\ env' = st.env
    /\ kernel' = [n \in Node |-> TableOf(st.kernel[S(n)])]
    /\ internal' = [n \in Node |-> TableOf(st.internal[S(n)])]
    /\ external' = [n \in Node |-> TableOf(st.external[S(n)])]
    /\ epoch' = [n \in Node |-> st.epoch[S(n)]]
    /\ sess' = [n \in Node |-> st.sess[S(n)]]
    /\ bound' = [n \in Node |-> [m \in Node |-> st.bound[S(n)][S(m)]]]
    /\ nextSeq' = [n \in Node |-> st.nextSeq[S(n)]]
    /\ queue' = [n \in Node |-> st.queue[S(n)]]
    /\ peerAck' = [n \in Node |-> [m \in Node |-> st.peerAck[S(n)][S(m)]]]
    /\ peerLive' = [n \in Node |-> [m \in Node |-> st.peerLive[S(n)][S(m)]]]
    /\ bulk' = [n \in Node |-> st.bulk[S(n)]]
    /\ todo' = [n \in Node |-> ToSet(st.todo[S(n)])]
    /\ dirty' = [n \in Node |-> ToSet(st.dirty[S(n)])]
    /\ behind' = [n \in Node |-> [m \in Node |-> st.behind[S(n)][S(m)]]]
    /\ resume' = [n \in Node |-> [m \in Node |-> st.resume[S(n)][S(m)]]]
    /\ ackedRecently' = [n \in Node |-> [m \in Node |-> st.ackedRecently[S(n)][S(m)]]]
    /\ expect' = [n \in Node |-> st.expect[S(n)]]
    /\ ackFrom' = [n \in Node |-> st.ackFrom[S(n)]]
    /\ inBulk' = [n \in Node |-> st.inBulk[S(n)]]
    /\ marked' = [n \in Node |-> ToSet(st.marked[S(n)])]
    /\ needSync' = [n \in Node |-> st.needSync[S(n)]]
    /\ msgs' = AsBag(st.msgs)
    /\ stash' = {[msg |-> e.msg, spent |-> ToSet(e.spent)] : e \in ToSet(st.stash)}
    /\ lastVer' = [c \in Conn |-> st.lastVer[c]]
    /\ born' = [c \in Conn |-> st.born[c]]
    /\ owed' = [n \in Node |-> ToSet(st.owed[S(n)])]
    /\ promoted' = [n \in Node |-> st.promoted[S(n)]]
    /\ dead' = [n \in Node |-> TableOf(st.dead[S(n)])]
    /\ dumped' = [n \in Node |-> st.dumped[S(n)]]
    /\ overflow' = st.overflow
    /\ failedAs' = [n \in Node |-> st.failedAs[S(n)]]
    /\ fenced' = st.fenced
    /\ repairs' = ToSet(st.repairs)

\* The named action with the logged node parameters; the rest is the action's
\* own choice, which the logged state decides: the message received, lost,
\* duplicated, captured, replayed (and where to) or rejected; the connection
\* of Notify, FlushIncremental and SendBulk; the peer of Retransmit.
Act(r) ==
    LET a == r.args IN
    CASE r.action = "Promote" -> Promote(a[1])
      [] r.action = "Resign" -> Resign(a[1])
      [] r.action = "Demote" -> Demote(a[1])
      [] r.action = "Fault" -> Fault(a[1])
      [] r.action = "Fail" -> Fail(a[1])
      [] r.action = "Recover" -> Recover(a[1])
      [] r.action = "LinkDown" -> LinkDown(a[1], a[2])
      [] r.action = "LinkUp" -> LinkUp(a[1], a[2])
      [] r.action = "LoseMsg" -> LoseMsg
      [] r.action = "DuplicateMsg" -> DuplicateMsg
      [] r.action = "Capture" -> Capture
      [] r.action = "Replay" -> Replay
      [] r.action = "ConnNew" -> ConnNew(a[1], a[2])
      [] r.action = "ConnUpdate" -> ConnUpdate(a[1], a[2])
      [] r.action = "ConnDestroy" -> ConnDestroy(a[1], a[2])
      [] r.action = "KernelExpire" -> KernelExpire(a[1], a[2])
      [] r.action = "Notify" -> Notify(a[1])
      [] r.action = "FlushIncremental" -> FlushIncremental(a[1])
      [] r.action = "SendBulk" -> SendBulk(a[1])
      [] r.action = "Retransmit" -> Retransmit(a[1])
      [] r.action = "SendAlive" -> SendAlive(a[1])
      [] r.action = "Reassert" -> Reassert(a[1])
      [] r.action = "Reject" -> Reject(a[1])
      [] r.action = "RecvAck" -> RecvAck(a[1], a[2])
      [] r.action = "RecvNack" -> RecvNack(a[1], a[2])
      [] r.action = "RecvResyncRequest" -> RecvResyncRequest(a[1], a[2])
      [] r.action = "PeerTimeout" -> PeerTimeout(a[1], a[2])
      [] r.action = "AckAges" -> AckAges(a[1], a[2])
      [] r.action = "Bind" -> Bind(a[1], a[2])
      [] r.action = "RecvState" -> RecvState(a[1], a[2])
      [] r.action = "RecvAlive" -> RecvAlive(a[1], a[2])
      [] r.action = "SendAck" -> SendAck(a[1], a[2])
      [] r.action = "RequestResync" -> RequestResync(a[1], a[2])
      [] r.action = "RecvHello" -> RecvHello(a[1], a[2])

TraceInit ==
    /\ l = 1
    /\ Init

TraceNext ==
    /\ l <= Len(Log)
    /\ l' = l + 1
    /\ LET r == Log[l] IN
       IF "set" \in DOMAIN r THEN IsState(r.set)
       ELSE Act(r) /\ IsState(r.state)

TraceSpec == TraceInit /\ [][TraceNext]_<<l, vars>>

\* Violated exactly when the whole log was matched: TLC's counterexample is
\* the accepted trace; a deadlock before that means a record is not a step.
Done == l <= Len(Log)
=============================================================================
