// Group semantics (attncclGroupStart/End): calls issued between them are recorded per thread and
// issued together at the outermost GroupEnd. Point-to-point calls of a group are all posted
// before any is waited for, so a grouped send/recv pair never deadlocks; collectives recorded in
// a group run after the posting, in issue order. A group that spans several communicators (one
// thread driving several ranks) runs each communicator's batch on its own thread.
#pragma once

#include <functional>

#include "comm/comm.h"

namespace attnccl {

bool groupActive();
// Records a point-to-point call in the open group.
void groupAddP2p(attncclComm* comm, bool isSend, void* buf, size_t bytes, int peer);
// Records a collective in the open group (runs at GroupEnd).
void groupAddCollective(attncclComm* comm, std::function<attncclResult_t()> work);
// Runs one communicator's point-to-point batch (used for a call outside a group, a group of one).
attncclResult_t runP2p(attncclComm* comm, bool isSend, void* buf, size_t bytes, int peer);

}  // namespace attnccl
