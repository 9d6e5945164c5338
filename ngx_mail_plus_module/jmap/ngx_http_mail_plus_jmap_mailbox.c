
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Mailbox/get, Mailbox/set, Mailbox/changes, Mailbox/query and Thread/get (RFC 8621, sections 2 and 3)
 */


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_mailbox[] = {
    { NULL, 0, NULL }
};
