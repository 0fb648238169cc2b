/*
 * bind_loopback.c: an LD_PRELOAD shim that keeps a server on the loopback interface.
 *
 * Orthanc 1.10 has no bind-address setting and listens on every interface. Preloaded into it, this library
 * rewrites every bind() to the IPv4 any-address (0.0.0.0) into 127.0.0.1 and every bind() to the IPv6
 * any-address (::) into ::1, and passes every other bind() through unchanged.
 *
 * infra/local/stack/orthanc.py compiles it at start time into the run directory (no binary is committed):
 *     gcc -shared -fPIC -O2 -o RUN_DIR/bind_loopback.so infra/local/bind_loopback.c -ldl
 * and starts the server with LD_PRELOAD=RUN_DIR/bind_loopback.so.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind = NULL;
    if (real_bind == NULL) {
        real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
        if (real_bind == NULL) {
            errno = ENOSYS;
            return -1;
        }
    }
    if (addr != NULL && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)addr;
        if (in4->sin_addr.s_addr == htonl(INADDR_ANY)) {
            struct sockaddr_in copy;
            memcpy(&copy, in4, sizeof(copy));
            copy.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&copy, (socklen_t)sizeof(copy));
        }
    } else if (addr != NULL && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (memcmp(&in6->sin6_addr, &in6addr_any, sizeof(struct in6_addr)) == 0) {
            struct sockaddr_in6 copy;
            memcpy(&copy, in6, sizeof(copy));
            copy.sin6_addr = in6addr_loopback;
            return real_bind(fd, (const struct sockaddr *)&copy, (socklen_t)sizeof(copy));
        }
    }
    return real_bind(fd, addr, len);
}
