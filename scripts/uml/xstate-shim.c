/*
 * xstate-shim.c: lets the User-Mode Linux 6.1 kernel run on hosts whose
 * extended CPU state is larger than UML's fixed buffer (AVX-512, AMX).
 *
 * UML 6.1 saves and restores a guest thread's FPU state with
 * ptrace(PTRACE_GETREGSET / PTRACE_SETREGSET, NT_X86_XSTATE) on a buffer of
 * sizeof(struct _xstate) = 832 bytes (x87, SSE, AVX). Host kernels since the
 * 5.14 FPU rework accept PTRACE_SETREGSET only with the whole XSAVE buffer
 * (2696 bytes with AVX-512, over 11 KiB with AMX) and fail the short one with
 * EFAULT, so every UML guest process dies with "ptrace set fp regs failed,
 * errno = 14".
 *
 * Loaded with LD_PRELOAD into linux.uml, this wraps ptrace(): for each of
 * UML's save buffers it keeps the host's whole XSAVE image on the side. A
 * GET fills the side image and hands UML its first 832 bytes; a SET lays
 * UML's 832 bytes (which it may have changed) over the side image and gives
 * the host the whole image. So no state, AVX-512 or AMX included, is lost
 * between guest threads.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

struct side {
    void *key;      /* UML's buffer address */
    uint8_t *image; /* the whole XSAVE image */
};

#define SLOTS 8192
static struct side table[SLOTS];
static size_t full_size;

static ptrace_fn real_ptrace(void)
{
    static ptrace_fn real;
    if (!real)
        real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
    return real;
}

static struct side *slot(void *key)
{
    size_t h = ((uintptr_t)key >> 4) % SLOTS;
    for (size_t i = 0; i < SLOTS; i++) {
        struct side *s = &table[(h + i) % SLOTS];
        if (s->key == key || s->key == NULL) {
            s->key = key;
            return s;
        }
    }
    return NULL;
}

/* The host's XSAVE size for ptrace: a GETREGSET into a large buffer
 * reports how much it wrote. */
static size_t host_size(pid_t pid)
{
    if (!full_size) {
        static uint8_t probe[1 << 16];
        struct iovec iov = { probe, sizeof probe };
        if (real_ptrace()(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) == 0)
            full_size = iov.iov_len;
    }
    return full_size;
}

long ptrace(enum __ptrace_request request, ...)
{
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);

    int req = (int)request;
    if ((req != PTRACE_GETREGSET && req != PTRACE_SETREGSET) ||
        (uintptr_t)addr != NT_X86_XSTATE || data == NULL)
        return real_ptrace()(req, pid, addr, data);

    struct iovec *uml = data;
    size_t size = host_size(pid);
    if (size == 0 || uml->iov_len >= size)
        return real_ptrace()(req, pid, addr, data);

    struct side *s = slot(uml->iov_base);
    if (s == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (s->image == NULL) {
        s->image = calloc(1, size);
        if (s->image == NULL) {
            errno = ENOMEM;
            return -1;
        }
        /* A SET before any GET: start from the thread's current state. */
        if (req == PTRACE_SETREGSET) {
            struct iovec cur = { s->image, size };
            if (real_ptrace()(PTRACE_GETREGSET, pid, addr, &cur) != 0)
                return -1;
        }
    }
    struct iovec whole = { s->image, size };
    if (req == PTRACE_GETREGSET) {
        if (real_ptrace()(PTRACE_GETREGSET, pid, addr, &whole) != 0)
            return -1;
        memcpy(uml->iov_base, s->image, uml->iov_len);
        return 0;
    }
    memcpy(s->image, uml->iov_base, uml->iov_len);
    return real_ptrace()(PTRACE_SETREGSET, pid, addr, &whole);
}
