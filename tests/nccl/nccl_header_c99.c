/* attnccl_nccl.h must compile as strict C99 (frameworks' C extensions include it); this
 * translation unit is built (not run) whenever NCCL and CUDA headers are found. */
#include "attnccl_nccl.h"

attncclResult_t (*const attnccl_nccl_header_c99_check)(attncclComm_t*, ncclComm_t, attncclConfig_t*) =
    attncclCommInitNccl;
