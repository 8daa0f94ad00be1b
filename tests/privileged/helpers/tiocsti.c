/* Test helper run inside a node: tries to push "x" into the input of the terminal on
 * fd 0 with ioctl(TIOCSTI), the classic way out of a sandbox sharing the caller's tty.
 * Prints "tiocsti ok" or "tiocsti <errno name>"; exits 0 only if the push worked. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
    char c = 'x';
    int r = ioctl(0, TIOCSTI, &c);

    printf("tiocsti %s\nsid %d pgrp %d\n", r == 0 ? "ok" : strerrorname_np(errno), getsid(0), getpgrp());
    return r == 0 ? 0 : 3;
}
