
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Identity/get and EmailSubmission/set (RFC 8621, sections 6 and 7): messages into the module's queue
 */


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_submission[] = {
    { NULL, 0, NULL }
};
