# Planted faults for .ci/check_libs.py (tests/test_check_libs.py assembles this into a shared library).
        .text
# a 64-byte vector stored as two 32-byte halves and reloaded whole: a split vector move
        .globl  planted_split_avx512
        .type   planted_split_avx512, @function
planted_split_avx512:
        subq    $72, %rsp
        vmovups %ymm0, (%rsp)
        vmovups %ymm1, 32(%rsp)
        vmovups (%rsp), %zmm2
        addq    $72, %rsp
        ret
        .size   planted_split_avx512, .-planted_split_avx512
# the SSE form: two 8-byte halves reloaded as 16 bytes
        .globl  planted_split_sse
        .type   planted_split_sse, @function
planted_split_sse:
        subq    $24, %rsp
        movq    %xmm0, (%rsp)
        movq    %xmm1, 8(%rsp)
        movups  (%rsp), %xmm2
        addq    $24, %rsp
        ret
        .size   planted_split_sse, .-planted_split_sse
# the same data moved whole, and an 8-byte load of a 16-byte store: no split move
        .globl  cnnext_cpu_clean
        .type   cnnext_cpu_clean, @function
cnnext_cpu_clean:
        subq    $24, %rsp
        movups  %xmm0, (%rsp)
        movq    (%rsp), %xmm1
        movups  (%rsp), %xmm2
        addq    $24, %rsp
        ret
        .size   cnnext_cpu_clean, .-cnnext_cpu_clean
# AVX2 (VEX) and AVX-512 (EVEX, here on ymm registers 16-31 and with a mask register) instructions
        .globl  planted_avx2
        .type   planted_avx2, @function
planted_avx2:
        vfmadd231ps %ymm1, %ymm2, %ymm0
        ret
        .size   planted_avx2, .-planted_avx2
        .globl  planted_avx512vl
        .type   planted_avx512vl, @function
planted_avx512vl:
        vaddps  %ymm17, %ymm18, %ymm16
        vmovups (%rdi), %ymm0{%k1}{z}
        ret
        .size   planted_avx512vl, .-planted_avx512vl
        .section .note.GNU-stack,"",@progbits
