// Bootstrap: the rendezvous that turns a unique id into a set of connected ranks.
//
// attncclGetUniqueId starts a small rendezvous server in the calling process (a thread with a
// listening socket, as in NCCL) and writes its address and a random key into the id. Every rank
// connects to it with the id; the server then serves rounds of all-gather: in each round every
// rank sends one blob and receives everybody's blobs in rank order. Ranks use a few rounds to
// exchange their identity and their transports' addresses, then finish(): the server answers
// every rank once all have said they are done, and exits (it also exits when all have closed, or
// at a deadline). Init returns only after that answer, so the process that serves the rendezvous
// cannot return from init and exit while another rank still waits for an answer.
//
//   rank 0 ──┐                     round k: blob_r ──▶ server ──▶ [blob_0 .. blob_{n-1}] to all
//   rank 1 ──┼──▶ server (in the process that called attncclGetUniqueId)
//   rank n-1─┘
//
// A communicator also keeps a listening socket of its own from init on (BootstrapListener, its
// address exchanged in init's round 2), so that any of its ranks can later serve a rendezvous
// without help from any other rank: attncclCommShrink's new root does (comm_shrink.cc).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attnccl.h"
#include "core/socket.h"

namespace attnccl {

// Fills *id and, unless ATTNCCL_COMM_ID names an address, starts a rendezvous server for it.
attncclResult_t bootstrapGetUniqueId(attncclUniqueId* id);
// Random 64-bit value that identifies the id (same on every rank).
uint64_t bootstrapIdKey(const attncclUniqueId& id);
// attncclInvalidArgument (naming the value) unless id came from attncclGetUniqueId.
attncclResult_t bootstrapCheckId(const attncclUniqueId& id);

// A listening socket kept open for rendezvous this rank may serve later. Each served rendezvous
// (bootstrapServe) gets a server thread that holds the listener while it runs. While one still
// waits for ranks (an abandoned shrink), a request for its key extends its wait and it serves
// that one too; a request for another key takes over, and the waiting one gives up.
class BootstrapListener {
 public:
  explicit BootstrapListener(int fd) : fd_(fd) {}
  ~BootstrapListener();
  BootstrapListener(const BootstrapListener&) = delete;
  BootstrapListener& operator=(const BootstrapListener&) = delete;
  int fd() const { return fd_; }

  std::mutex mutex;  // guards the fields below
  uint64_t generation = 0;     // the newest server: the one that may accept
  bool accepting = false;      // that server waits for ranks...
  uint64_t acceptingKey = 0;   // ...of this key
  std::chrono::steady_clock::time_point extendTo{};  // ...at least until then
  std::mutex acceptMutex;  // held by a server while it accepts

 private:
  int fd_;
};

// Opens this rank's listener on the bootstrap interface (pickListenAddr, any port); *address is
// its packed address for bootstrapIdAt.
attncclResult_t bootstrapListen(std::shared_ptr<BootstrapListener>* out, std::string* address);
// The unique id of a rendezvous served at `address` (from bootstrapListen) with `key`.
attncclResult_t bootstrapIdAt(const std::string& address, uint64_t key, attncclUniqueId* id);
// Starts a rendezvous server for `key` on the listener (a thread, as for attncclGetUniqueId), or
// extends the wait of the one still accepting for that key. It waits timeoutMs + 1 s for ranks.
attncclResult_t bootstrapServe(const std::shared_ptr<BootstrapListener>& listener, uint64_t key, int timeoutMs);

class BootstrapClient {
 public:
  ~BootstrapClient();
  // Connects to the id's server as `rank` of `nranks` (rank 0 starts the server itself when the
  // id came from ATTNCCL_COMM_ID).
  attncclResult_t connect(const attncclUniqueId& id, int nranks, int rank, int timeoutMs);
  // One round: sends mine, receives every rank's blob.
  attncclResult_t allGather(const std::string& mine, std::vector<std::string>* all);
  // After the last round: tells the server this rank has every answer and waits until every rank
  // has said so (attncclSuccess), then closes. An error means some rank did not finish init.
  attncclResult_t finish();
  void close();
  // Waits of connect() and allGather() also end when `aborted` says so (attncclCommAbort of a
  // communicator that is still being created).
  void setAbort(AbortFn aborted) { aborted_ = std::move(aborted); }
  // connect() asks again, until its deadline, while the id's address answers for another
  // rendezvous (a communicator's listener that an earlier, abandoned shrink still holds).
  void setRetryOtherRendezvous(bool retry) { retryOther_ = retry; }

 private:
  AbortFn aborted_;
  bool retryOther_ = false;
  int fd_ = -1;
  bool local_ = false;  // one rank and no server to talk to (ATTNCCL_COMM_ID, nranks 1)
  int nranks_ = 0;
  int rank_ = 0;
  int timeoutMs_ = 0;
};

}  // namespace attnccl
