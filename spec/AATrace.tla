------------------------------ MODULE AATrace -------------------------------
(***************************************************************************)
(* Trace validation of active_active.tla (as Trace.tla for sync_protocol): *)
(* is a walk of the Python mirror (model_tests/active_active.py) a         *)
(* behaviour of the spec? The trace is {"spec": "active_active",           *)
(* "consts": ..., "log": [...]}; each record is {"action": A, "args":      *)
(* [...], "state": S}: a step of the named action with those parameters    *)
(* must lead exactly to the logged state. Connections are [group, i]       *)
(* arrays; tables are lists of [connection, value] pairs.                  *)
(* `snep spec trace-check TRACE.json` runs it; the trace is accepted when  *)
(* the Done invariant is violated (the end of the log reached).            *)
(***************************************************************************)
EXTENDS active_active, Json, TLC

CONSTANT TraceFile   \* absolute path of the trace (JSON)

Log == JsonDeserialize(TraceFile).log

VARIABLE l           \* the next log record to check

ToSet(s) == {s[i] : i \in DOMAIN s}
S(n) == ToString(n)
\* A list of [connection, value] pairs as a function on Conn.
Fn(ps) == [c \in Conn |-> (CHOOSE p \in ToSet(ps) : p[1] = c)[2]]
\* A STATE or ACK carries no table in the mirror (an empty list): the spec's
\* EmptyTable.
MsgOf(r) == [type |-> r.type, g |-> r.g, e |-> r.e, c |-> r.c, v |-> r.v,
             tab |-> IF r.tab = <<>> THEN EmptyTable ELSE Fn(r.tab)]
HoldOf(h) == [at |-> h.at, ver |-> h.ver, wait |-> ToSet(h.wait)]

IsState(st) ==
    /\ alive' = [n \in Node |-> st.alive[S(n)]]
    /\ claim' = [n \in Node |-> [g \in Group |-> st.claim[S(n)][S(g)]]]
    /\ epoch' = [n \in Node |-> [g \in Group |-> st.epoch[S(n)][S(g)]]]
    /\ synced' = [n \in Node |-> ToSet(st.synced[S(n)])]
    /\ kernel' = [n \in Node |-> Fn(st.kernel[S(n)])]
    /\ chan' = [a \in Node |-> [b \in Node |->
                  LET q == st.chan[S(a)][S(b)] IN [i \in DOMAIN q |-> MsgOf(q[i])]]]
    /\ held' = [c \in Conn |-> HoldOf(Fn(st.held)[c])]
    /\ failures' = st.failures
    /\ lastVer' = Fn(st.lastVer)
    /\ released' = Fn(st.released)

Act(r) ==
    LET a == r.args IN
    CASE r.action = "Fail" -> Fail(a[1])
      [] r.action = "Recover" -> Recover(a[1])
      [] r.action = "Elect" -> Elect(a[1], a[2])
      [] r.action = "Resign" -> Resign(a[1], a[2])
      [] r.action = "ConnNew" -> ConnNew(a[1], a[2])
      [] r.action = "ConnUpdate" -> ConnUpdate(a[1], a[2])
      [] r.action = "ConnDestroy" -> ConnDestroy(a[1], a[2])
      [] r.action = "DeferRelease" -> DeferRelease(a[1], a[2])
      [] r.action = "DeferBound" -> DeferBound(a[1], a[2])
      [] r.action = "SendDump" -> SendDump(a[1], a[2], a[3])
      [] r.action = "RecvState" -> RecvState(a[1], a[2])
      [] r.action = "RecvDump" -> RecvDump(a[1], a[2])
      [] r.action = "RecvAck" -> RecvAck(a[1], a[2])

TraceInit ==
    /\ l = 1
    /\ Init

TraceNext ==
    /\ l <= Len(Log)
    /\ l' = l + 1
    /\ LET r == Log[l] IN Act(r) /\ IsState(r.state)

TraceSpec == TraceInit /\ [][TraceNext]_<<l, vars>>

\* Violated exactly when the whole log was matched.
Done == l <= Len(Log)
=============================================================================
