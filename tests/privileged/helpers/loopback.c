/* Loopback check from inside a node: prints the flags of `lo` ("lo up" / "lo down"),
 * then listens on 127.0.0.1 (a kernel-chosen port), connects to it, and echoes a
 * message through the connection: "connect ok" or "connect ERRNO". Exit 0 if it worked. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    struct ifreq ifr = {0};
    char buf[16] = "";
    int ls, cs, as, fd = socket(AF_INET, SOCK_DGRAM, 0);

    strcpy(ifr.ifr_name, "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        printf("lo %s\n", strerrorname_np(errno));
    else
        printf("lo %s\n", ifr.ifr_flags & IFF_UP ? "up" : "down");
    ls = socket(AF_INET, SOCK_STREAM, 0);
    cs = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || cs < 0 || bind(ls, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(ls, 1) < 0 ||
        getsockname(ls, (struct sockaddr *)&addr, &len) < 0) {
        printf("listen %s\n", strerrorname_np(errno));
        return 1;
    }
    if (connect(cs, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        printf("connect %s\n", strerrorname_np(errno));
        return 1;
    }
    as = accept(ls, NULL, NULL);
    if (as < 0 || write(cs, "ping", 4) != 4 || read(as, buf, sizeof(buf) - 1) != 4 || strcmp(buf, "ping")) {
        printf("exchange failed\n");
        return 1;
    }
    printf("connect ok\n");
    return 0;
}
