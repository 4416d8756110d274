from bulkpush.cli import main

main()
