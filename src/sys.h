/* core.sys: the operating-system calls the Lua side needs without a shell
 * (private files and directories, terminals, ownership checks, advisory
 * locks). A leaf: no client, no libcurl. */
#ifndef MOLTFLOW_SYS_H
#define MOLTFLOW_SYS_H

#include <lua.h>

/* Sets field "sys" on the table at the top of the stack. */
void moltflow_sys_open(lua_State *L);

#endif
