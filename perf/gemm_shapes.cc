// gemm_shapes: OpenBLAS sgemm against oneDNN 2.6 matmul (fp32 and, where oneDNN has one, bf16)
// at the CPU tiles' own GEMM shapes (src/attn/cpu/fwd.cc, bwd.cc) and at 2048^3, each of T
// threads running its own problems (as the tiles' pool threads do), OpenBLAS and oneDNN (OpenMP)
// both single-threaded per caller. Rates are GFLOP per thread-CPU-second summed over threads
// (steady on a shared machine), best of 5. C += alpha op(A) op(B), as the tiles call them.
// Not built by CMake (a one-off measurement behind src/attn/cpu/README.md, "GEMM layer"):
//   g++ -O2 -std=c++17 perf/gemm_shapes.cc -o /tmp/gemm_shapes $(pkg-config --cflags --libs openblas) -ldnnl -ldl -lpthread
//   /tmp/gemm_shapes 1; /tmp/gemm_shapes 2
#include <dnnl.hpp>
#include <cblas.h>
#include <dlfcn.h>
#include <chrono>
#include <time.h>
static double tcpu(){timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t); return t.tv_sec+1e-9*t.tv_nsec;}
#include <cstdio>
#include <thread>
#include <vector>
#include <cstring>
#include <algorithm>
using namespace dnnl;
using dt = memory::data_type;
static void ompOne(){ auto f=(void(*)(int))dlsym(RTLD_DEFAULT,"omp_set_num_threads"); if(f) f(1);}
struct Shape{int M,N,K; bool ta,tb;};
static engine eng(engine::kind::cpu,0);
double runDnnl(Shape s, dt t, int reps, std::string* impl){
  ompOne();
  stream st(eng);
  int lda = s.ta? s.M: s.K, ldb = s.tb? s.K : s.N;
  memory::desc a(s.ta? memory::dims{s.M,s.K}:memory::dims{s.M,s.K}, t, s.ta? memory::dims{1,lda}: memory::dims{lda,1});
  memory::desc b({s.K,s.N}, t, s.tb? memory::dims{1,ldb}: memory::dims{ldb,1});
  memory::desc c({s.M,s.N}, dt::f32, {s.N,1});
  primitive_attr attr; attr.set_output_scales(0,{0.5f}); post_ops po; po.append_sum(1.f); attr.set_post_ops(po);
  matmul::primitive_desc pd(matmul::desc(a,b,c), attr, eng);
  if(impl) *impl = pd.impl_info_str();
  matmul mm(pd);
  size_t es = t==dt::f32?4:2;
  std::vector<char> A((size_t)s.M*s.K*es), B((size_t)s.K*s.N*es); std::vector<float> C((size_t)s.M*s.N);
  for(size_t i=0;i<A.size();i+=2){ uint16_t v=0x3f80; memcpy(&A[i],&v,2);} for(size_t i=0;i<B.size();i+=2){ uint16_t v=0x3c00; memcpy(&B[i],&v,2);} 
  memory am(a,eng,A.data()), bm(b,eng,B.data()), cm(c,eng,C.data());
  double best=1e30;
  for(int r=0;r<5;r++){ double t0=tcpu();
    for(int i=0;i<reps;i++) mm.execute(st,{{DNNL_ARG_SRC,am},{DNNL_ARG_WEIGHTS,bm},{DNNL_ARG_DST,cm}});
    st.wait(); double dtm=tcpu()-t0; best=std::min(best,dtm);}
  return 2.0*s.M*s.N*s.K*reps/best*1e-9;
}
double runBlas(Shape s,int reps){
  std::vector<float> A((size_t)s.M*s.K,1.f),B((size_t)s.K*s.N,1.f),C((size_t)s.M*s.N,0.f);
  int lda = s.ta? s.M: s.K, ldb = s.tb? s.K : s.N; double best=1e30;
  for(int r=0;r<5;r++){ double t0=tcpu();
   for(int i=0;i<reps;i++) cblas_sgemm(CblasRowMajor,s.ta?CblasTrans:CblasNoTrans,s.tb?CblasTrans:CblasNoTrans,s.M,s.N,s.K,0.5f,A.data(),lda,B.data(),ldb,1.f,C.data(),s.N);
   double dtm=tcpu()-t0; best=std::min(best,dtm);}
  return 2.0*s.M*s.N*s.K*reps/best*1e-9;
}
static bool bf16ok=false;
int main(int argc,char**argv){
  try{ memory::desc a({8,8},dt::bf16,{8,1}); matmul::primitive_desc pd(matmul::desc(a,a,memory::desc({8,8},dt::f32,{8,1})),eng); bf16ok=true;}catch(...){}
  printf("# bf16 matmul available: %d, isa %d\n",bf16ok,(int)get_effective_cpu_isa());
  int T = argc>1? atoi(argv[1]):1;
  openblas_set_num_threads(1);
  Shape shapes[]={{128,512,128,0,1},{128,128,512,0,0},{256,128,128,1,0},{128,256,128,0,1},{128,128,256,0,0},{128,512,64,0,1},{128,64,512,0,0},{32,200,128,0,1},{2048,2048,2048,0,0}};
  const char* names[]={"fwd S=QK^T 128x512x128 NT","fwd O+=PV 128x128x512 NN","bwd dV+=P^T dO 256x128x128 TN","bwd S/dP 128x256x128 NT","bwd dQ+=dS K 128x128x256 NN","d64 S 128x512x64 NT","d64 PV 128x64x512 NN","chunk 32x200x128 NT","2048^3 NN"};
  printf("# %d threads, GFLOP per thread-CPU-second, summed (each thread runs its own GEMMs)\n# %-32s %9s %9s %9s  impl(f32) impl(bf16)\n",T,"shape","openblas","dnnl f32","dnnl bf16");
  for(int i=0;i<9;i++){ Shape s=shapes[i]; int reps = i==8?1:200;
    double r[3]={0,0,0}; std::string i1,i2;
    for(int k=0;k<3;k++){ std::vector<std::thread> th; std::vector<double> g(T);
      for(int t=0;t<T;t++) th.emplace_back([&,t]{ g[t]= k==0? runBlas(s,reps): (k==2 && !bf16ok)? 0.0 : runDnnl(s,k==1?dt::f32:dt::bf16,reps,t==0?(k==1?&i1:&i2):nullptr);});
      for(auto&x:th) x.join(); for(double x:g) r[k]+=x; }
    printf("  %-32s %9.1f %9.1f %9.1f  %s %s\n",names[i],r[0],r[1],r[2],i1.c_str(),i2.c_str()); }
}
