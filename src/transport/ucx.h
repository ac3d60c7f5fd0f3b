// UCX (ucp) transport: any host peer, on this node or another. Tag matching carries
// (source rank, tag) so per-(peer, tag) ordering holds; UCX picks shm, tcp or InfiniBand
// underneath (UCX_TLS restricts it, e.g. UCX_TLS=tcp to exercise the inter-node path on one
// machine). Peer failures are reported through UCX's peer error handling.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "transport/transport.h"

namespace attnccl {

struct UcxParams {
  int rank = 0;
  int nranks = 1;
  int timeoutMs = 0;
};

// True when this build has UCX.
bool ucxAvailable();

// The UCX settings this transport changes from UCX's defaults, as (name without the UCX_
// prefix, value) pairs, for a rank whose operation timeout is timeoutMs (0: the default). A
// setting the user made in the environment (its UCX_ variable) is left out: the user's choice wins.
std::vector<std::pair<std::string, std::string>> ucxConfigDefaults(int timeoutMs);

// Creates the transport's local resources (context, worker) and returns the address blob that
// goes into this rank's PeerInfo::ucxBlob. connect() later builds endpoints to the peers.
attncclResult_t ucxTransportCreate(const UcxParams& params, std::unique_ptr<Transport>* out, std::string* blob);

}  // namespace attnccl
