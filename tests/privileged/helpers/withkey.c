/* withkey DESC VALUE PROGRAM [ARGS...]: join a new session keyring, add a "user" key
 * DESC holding VALUE to it, then exec PROGRAM (it and its children inherit the keyring).
 * Exits 125 when the kernel refuses the keyring or the key. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: withkey DESC VALUE PROGRAM [ARGS...]\n");
        return 2;
    }
    if (syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL) < 0 ||
        syscall(SYS_add_key, "user", argv[1], argv[2], strlen(argv[2]), -3 /* session */) < 0) {
        perror("withkey");
        return 125;
    }
    execvp(argv[3], argv + 3);
    perror(argv[3]);
    return 127;
}
