// Placeholder: the caseworker dashboard replaces this file.
"use strict";
